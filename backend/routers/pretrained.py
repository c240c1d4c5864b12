"""Seed models: the checkpoints of the server's ``pretrained_dir`` a project can start from."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import CtxDep
from ..schemas.common import ERROR_RESPONSES
from ..schemas.models import SeedFilePublic

router = APIRouter(prefix="/pretrained", tags=["models"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[SeedFilePublic])
def list_seed_files(ctx: CtxDep) -> list[SeedFilePublic]:
    """Files a new project may name as `pretrained` (empty when the server has no `pretrained_dir`).
    Without one a project starts from random weights: its masks are noise until it learns from labels."""
    return [SeedFilePublic(**f) for f in ctx.registry.seed_files()]
