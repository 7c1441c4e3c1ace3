"""Writes for tenants, memberships, invitations and cross-host logins (split by subdomain)."""
