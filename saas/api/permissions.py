"""Scopes: each API view names the scope each HTTP method needs (`required_scopes`; HEAD
needs GET's)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tenants.models import APIKey


class ScopeRequired(BasePermission):
    message = "This API key does not have the scope this request needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, APIKey):
            return False
        if request.method == "OPTIONS":
            return True  # what the endpoint allows (no tenant data): any valid key may ask
        method = "GET" if request.method == "HEAD" else request.method
        needed = getattr(view, "required_scopes", {}).get(method)
        if needed is None:
            # A method the view has no handler for goes on to DRF's 405 (with Allow); one it
            # handles without declaring a scope (e.g. DRF's OPTIONS) is refused.
            return not hasattr(view, method.lower())
        if needed not in key.scopes:
            self.message = f"This API key needs the “{needed}” scope for this request."
            return False
        return True
