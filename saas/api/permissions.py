"""Scopes: each API view names the scope each HTTP method needs (`required_scopes`)."""

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
        needed = getattr(view, "required_scopes", {}).get(request.method)
        if needed is None:
            return False  # a method the view did not declare a scope for: refuse
        if needed not in key.scopes:
            self.message = f"This API key needs the “{needed}” scope for this request."
            return False
        return True
