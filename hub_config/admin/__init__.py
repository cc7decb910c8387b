"""The admin panel at ``<base>admin`` (placeholder router; the panel is being built)."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
