"""The raw zone (`raw_root`), read-only: discovery and hashing of landed exports (`landing`),
paths given from outside checked against the root (`paths`), and one reader per format
(`readers`), each returning the contract's columns as text, numbered by record."""
