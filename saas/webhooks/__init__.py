"""Webhooks: tenants' HTTPS endpoints that receive signed events (Standard Webhooks)."""
