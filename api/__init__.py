"""The billing customer API (FastAPI): ``create_app`` builds it; ``crmsync web`` serves it."""
