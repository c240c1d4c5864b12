"""Sparse annotations of an image: label PNG, strokes, points; revisions; ETag / If-Match.

Every PUT/PATCH writes a new revision (history is kept, with author and time). Once an image has a
revision, writes must send ``If-Match`` with the current ETag: 428 without it, 412 when it is stale.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Header, Response

from core.orm import AnnotationRevision, Image

from ..deps import CtxDep, PrincipalDep, SessionDep, image_or_404, project_or_404
from ..schemas.annotations import AnnotationEdit, AnnotationPublic, RevisionPublic
from ..schemas.common import ERROR_RESPONSES, FilePart, IdPath
from ..services.annotations import etag_for, public, revision_public
from ..uploads import read_upload

router = APIRouter(prefix="/images/{image_id}/annotation", tags=["annotations"], responses=ERROR_RESPONSES)
IfMatch = Annotated[str | None, Header(min_length=1, description="ETag of the revision being edited (or `*`); required "
                                                            "once one exists")]
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}}}


def _with_etag(response: Response, image: Image, row: AnnotationRevision) -> AnnotationPublic:
    response.headers["ETag"] = etag_for(image.id, row.revision)
    return public(image, row)


@router.get("", response_model=AnnotationPublic)
def get_annotation(image_id: IdPath, session: SessionDep, ctx: CtxDep, response: Response) -> AnnotationPublic:
    """The newest revision's metadata, strokes and points; its ETag is in the header and the body."""
    image = image_or_404(session, image_id)
    return _with_etag(response, image, ctx.annotations.current(session, image))


@router.get("/png", response_class=Response, responses=PNG)
def get_annotation_png(image_id: IdPath, session: SessionDep, ctx: CtxDep) -> Response:
    """The label as a paletted PNG: pixel value = class id, 255 = unlabeled."""
    image = image_or_404(session, image_id)
    row = ctx.annotations.current(session, image)
    project = project_or_404(session, image.project_id)
    return Response(ctx.annotations.label_png(row, project), media_type="image/png",
                    headers={"ETag": etag_for(image.id, row.revision)})


@router.put("", response_model=AnnotationPublic)
def put_annotation(image_id: IdPath, body: AnnotationEdit, session: SessionDep, ctx: CtxDep, who: PrincipalDep,
                   response: Response, if_match: IfMatch = None) -> AnnotationPublic:
    """Replace the label with these strokes and points drawn on an empty (all-255) label."""
    image = image_or_404(session, image_id)
    row = ctx.annotations.write(session, image, author=who.name, if_match=if_match, kind="strokes", edit=body)
    return _with_etag(response, image, row)


@router.patch("", response_model=AnnotationPublic)
def patch_annotation(image_id: IdPath, body: AnnotationEdit, session: SessionDep, ctx: CtxDep, who: PrincipalDep,
                     response: Response, if_match: IfMatch = None) -> AnnotationPublic:
    """Draw these strokes and points over the current label (class_id 255 erases)."""
    image = image_or_404(session, image_id)
    row = ctx.annotations.write(session, image, author=who.name, if_match=if_match, kind="patch", edit=body)
    return _with_etag(response, image, row)


@router.put("/png", response_model=AnnotationPublic)
def put_annotation_png(image_id: IdPath, session: SessionDep, ctx: CtxDep, who: PrincipalDep, response: Response,
                       file: Annotated[FilePart, File(description="8-bit gray or paletted PNG, image-sized, "
                                                                  "255=unlabeled")],
                       if_match: IfMatch = None) -> AnnotationPublic:
    """Replace the label with an uploaded label PNG."""
    image = image_or_404(session, image_id)
    png = read_upload(file, ctx.settings)
    return _with_etag(response, image, ctx.annotations.write(session, image, author=who.name, if_match=if_match,
                                                         kind="png", png=png))


@router.get("/revisions", response_model=list[RevisionPublic])
def list_revisions(image_id: IdPath, session: SessionDep, ctx: CtxDep) -> list[RevisionPublic]:
    image = image_or_404(session, image_id)
    return [revision_public(r) for r in ctx.annotations.history(session, image.id)]


@router.get("/revisions/{revision}", response_model=AnnotationPublic)
def get_revision(image_id: IdPath, revision: IdPath, session: SessionDep, ctx: CtxDep) -> AnnotationPublic:
    image = image_or_404(session, image_id)
    return public(image, ctx.annotations.revision(session, image.id, revision))


@router.get("/revisions/{revision}/png", response_class=Response, responses=PNG)
def get_revision_png(image_id: IdPath, revision: IdPath, session: SessionDep, ctx: CtxDep) -> Response:
    image = image_or_404(session, image_id)
    row = ctx.annotations.revision(session, image.id, revision)
    return Response(ctx.annotations.label_png(row, project_or_404(session, image.project_id)),
                    media_type="image/png")
