"""Sparse annotations of an image: label PNG, strokes, points; revisions; ETag / If-Match.

Every PUT/PATCH writes a new revision (history is kept, with author and time). Once an image has a
revision, writes must send ``If-Match`` with the current ETag: 428 without it, 412 when it is stale.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Header, Response, UploadFile
from pydantic import WithJsonSchema

from core.errors import ErrorCode, ServiceError
from core.orm import AnnotationRevision, Image

from ..deps import CtxDep, PrincipalDep, SessionDep, image_or_404, project_or_404
from ..schemas.annotations import AnnotationEdit, AnnotationPublic, Point, RevisionPublic, Stroke
from ..schemas.common import ERROR_RESPONSES, UPLOAD_SCHEMA, IdPath
from ..services.annotations import decode_label_png, etag_for, rasterise
from ..uploads import read_upload

router = APIRouter(prefix="/images/{image_id}/annotation", tags=["annotations"], responses=ERROR_RESPONSES)
IfMatch = Annotated[str | None, Header(min_length=1, description="ETag of the revision being edited (or `*`); required "
                                                            "once one exists")]
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}}}


def public(image: Image, row: AnnotationRevision) -> AnnotationPublic:
    return AnnotationPublic(
        image_id=image.id, revision=row.revision, etag=etag_for(image.id, row.revision), author=row.author,
        kind=row.kind, created_at=row.created_at, width=image.width, height=image.height,
        labeled_pixels=row.labeled_pixels, class_counts=row.class_counts,
        strokes=[Stroke.model_validate(s) for s in row.strokes], points=[Point.model_validate(p) for p in row.points],
    )


def _current(session: SessionDep, ctx: CtxDep, image: Image) -> AnnotationRevision:
    row = ctx.annotations.latest(session, image.id)
    if row is None:
        raise ServiceError(ErrorCode.NOT_FOUND, f"image {image.id} has no annotation yet")
    return row


@router.get("", response_model=AnnotationPublic)
def get_annotation(image_id: IdPath, session: SessionDep, ctx: CtxDep, response: Response) -> AnnotationPublic:
    """The newest revision's metadata, strokes and points; its ETag is in the header and the body."""
    image = image_or_404(session, image_id)
    row = _current(session, ctx, image)
    response.headers["ETag"] = etag_for(image.id, row.revision)
    return public(image, row)


@router.get("/png", response_class=Response, responses=PNG)
def get_annotation_png(image_id: IdPath, session: SessionDep, ctx: CtxDep) -> Response:
    """The label as a paletted PNG: pixel value = class id, 255 = unlabeled."""
    image = image_or_404(session, image_id)
    row = _current(session, ctx, image)
    project = project_or_404(session, image.project_id)
    return Response(ctx.annotations.label_png(row, project), media_type="image/png",
                    headers={"ETag": etag_for(image.id, row.revision)})


def _save(session: SessionDep, ctx: CtxDep, image: Image, who: PrincipalDep, if_match: str | None, kind: str,
          edit: AnnotationEdit | None, png: bytes | None, response: Response) -> AnnotationPublic:
    project = project_or_404(session, image.project_id)
    current = ctx.annotations.latest(session, image.id)
    ctx.annotations.check_precondition(current, image.id, if_match)
    n = len(project.classes)
    if png is not None:
        label = decode_label_png(png, image.width, image.height, n)
        edit = AnnotationEdit()
    else:
        assert edit is not None
        base = ctx.annotations.label(current if kind == "patch" else None, image)
        label = rasterise(base, edit, n)
    row = ctx.annotations.save(session, project, image, label, author=who.name, kind=kind, strokes=edit.strokes,
                               points=edit.points, current=current)
    response.headers["ETag"] = etag_for(image.id, row.revision)
    return public(image, row)


@router.put("", response_model=AnnotationPublic)
def put_annotation(image_id: IdPath, body: AnnotationEdit, session: SessionDep, ctx: CtxDep, who: PrincipalDep,
                   response: Response, if_match: IfMatch = None) -> AnnotationPublic:
    """Replace the label with these strokes and points drawn on an empty (all-255) label."""
    image = image_or_404(session, image_id)
    return _save(session, ctx, image, who, if_match, "strokes", body, None, response)


@router.patch("", response_model=AnnotationPublic)
def patch_annotation(image_id: IdPath, body: AnnotationEdit, session: SessionDep, ctx: CtxDep, who: PrincipalDep,
                     response: Response, if_match: IfMatch = None) -> AnnotationPublic:
    """Draw these strokes and points over the current label (class_id 255 erases)."""
    image = image_or_404(session, image_id)
    return _save(session, ctx, image, who, if_match, "patch", body, None, response)


@router.put("/png", response_model=AnnotationPublic)
def put_annotation_png(image_id: IdPath, session: SessionDep, ctx: CtxDep, who: PrincipalDep, response: Response,
                       file: Annotated[UploadFile, WithJsonSchema(UPLOAD_SCHEMA),
                                       File(description="8-bit gray or paletted PNG, image-sized, 255=unlabeled")],
                       if_match: IfMatch = None) -> AnnotationPublic:
    """Replace the label with an uploaded label PNG."""
    image = image_or_404(session, image_id)
    return _save(session, ctx, image, who, if_match, "png", None, read_upload(file, ctx.settings), response)


@router.get("/revisions", response_model=list[RevisionPublic])
def list_revisions(image_id: IdPath, session: SessionDep, ctx: CtxDep) -> list[RevisionPublic]:
    image = image_or_404(session, image_id)
    return [RevisionPublic(revision=r.revision, author=r.author, kind=r.kind, created_at=r.created_at,
                           labeled_pixels=r.labeled_pixels, class_counts=r.class_counts)
            for r in ctx.annotations.history(session, image.id)]


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
