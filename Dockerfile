# The crmsync image: every `crmsync ...` service of docker-compose.yml runs it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install . \
 && useradd --create-home --uid 10001 crmsync

# The embedded SQLite default (no CRMSYNC_DATABASE_URL) lands in the home directory.
USER crmsync
WORKDIR /home/crmsync
EXPOSE 8000
CMD ["crmsync", "--help"]
