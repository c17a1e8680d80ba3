"""servio: customer-service exports in, curated service-quality and profitability tables out."""

__version__ = "0.1.0"
