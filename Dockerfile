# Production image: daphne (web), the answer runner, Celery worker and beat all run from it
# (see docker-compose.yml).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ATRIUM_ENV=production
WORKDIR /app

COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY . .
# collectstatic needs settings to load; these throwaway values never reach a running container.
RUN SECRET_KEY=build-only-build-only-build-only-1234 DATABASE_URL=postgres://x@localhost/x \
    REDIS_URL=redis://localhost:6379/0 python manage.py collectstatic --noinput

# /media: uploaded files on local disk (a named volume takes this folder's owner).
RUN useradd --create-home atrium && mkdir -p /media && chown atrium /media
USER atrium
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "saas.asgi:application"]
