"""Celery: the app, thin tasks, the beat dispatcher, locks and the shared rate budget."""
