"""Images of a project: upload (PNG/JPEG/TIFF, 8/16-bit gray or RGB), list, original, thumbnail, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Response
from fastapi.responses import FileResponse

from ..deps import CtxDep, SessionDep, image_or_404, project_or_404
from ..schemas.common import ERROR_RESPONSES, FilePart, IdPath, Offset, Page
from ..schemas.images import ImagePublic
from ..services import images as svc
from ..uploads import upload_of

router = APIRouter(tags=["images"], responses=ERROR_RESPONSES)
MEDIA = {"PNG": "image/png", "JPEG": "image/jpeg", "TIFF": "image/tiff"}



@router.post("/projects/{project_id}/images", status_code=201, response_model=ImagePublic)
def upload_image(project_id: IdPath, session: SessionDep, ctx: CtxDep,
                 file: Annotated[FilePart, File(description="PNG, JPEG or TIFF; 8/16-bit gray or RGB")]) -> ImagePublic:
    """Stores the file content-addressed (SHA-256); the same content twice in a project is a 409."""
    image = ctx.images.add(session, project_or_404(session, project_id), upload_of(file))
    return svc.public(session, image)


@router.get("/projects/{project_id}/images", response_model=Page[ImagePublic])
def list_images(project_id: IdPath, session: SessionDep, offset: Offset = 0,
                limit: int = Query(50, ge=1, le=500)) -> Page[ImagePublic]:
    project_or_404(session, project_id)
    return svc.page(session, project_id, offset, limit)


@router.get("/images/{image_id}", response_model=ImagePublic)
def get_image(image_id: IdPath, session: SessionDep) -> ImagePublic:
    return svc.public(session, image_or_404(session, image_id))


@router.get("/images/{image_id}/file", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/tiff": {}}}})
def get_image_file(image_id: IdPath, session: SessionDep, ctx: CtxDep) -> FileResponse:
    """The original bytes as uploaded."""
    image = image_or_404(session, image_id)
    return FileResponse(ctx.images.original(image), media_type=MEDIA.get(image.format, "application/octet-stream"),
                        filename=image.filename, headers={"ETag": f'"{image.sha256}"'})


@router.get("/images/{image_id}/thumbnail", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}}})
def get_thumbnail(image_id: IdPath, session: SessionDep, ctx: CtxDep,
                  size: int = Query(256, ge=16, le=1024, description="longer side in pixels")) -> FileResponse:
    """8-bit RGB PNG no larger than ``size`` (16-bit images rescaled as the model sees them)."""
    return FileResponse(ctx.images.thumbnail(image_or_404(session, image_id), size), media_type="image/png")


@router.delete("/images/{image_id}", status_code=204)
def delete_image(image_id: IdPath, session: SessionDep, ctx: CtxDep) -> Response:
    """Deletes the image and its annotation history; the file goes when no project references it."""
    ctx.images.delete(session, image_or_404(session, image_id))
    return Response(status_code=204)
