"""Images of a project: upload (PNG/JPEG/TIFF, 8/16-bit gray or RGB), list, original, thumbnail, delete."""

from __future__ import annotations

from fastapi import APIRouter, File, Query, Response, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.errors import ErrorCode, ServiceError
from core.orm import AnnotationRevision, Image
from core.settings import Settings

from ..deps import CtxDep, SessionDep, image_or_404, project_or_404
from ..schemas.common import ERROR_RESPONSES, IdPath, Offset, Page
from ..schemas.images import ImagePublic
from ..services.images import check_filename, check_image_bytes

router = APIRouter(tags=["images"], responses=ERROR_RESPONSES)
MEDIA = {"PNG": "image/png", "JPEG": "image/jpeg", "TIFF": "image/tiff"}


def read_upload(file: UploadFile, settings: Settings) -> bytes:
    """Read at most the limit (+1 byte to detect overflow) from the spooled upload."""
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ServiceError(ErrorCode.TOO_LARGE, f"upload exceeds the limit of {settings.max_upload_bytes} bytes")
    return data


def image_public(session: SessionDep, image: Image) -> ImagePublic:
    rev = session.scalar(select(func.max(AnnotationRevision.revision)).where(AnnotationRevision.image_id == image.id))
    out = ImagePublic.model_validate(image)
    out.annotation_revision = rev
    return out


@router.post("/projects/{project_id}/images", status_code=201, response_model=ImagePublic)
def upload_image(project_id: IdPath, session: SessionDep, ctx: CtxDep,
                 file: UploadFile = File(description="PNG, JPEG or TIFF; 8/16-bit gray or RGB")) -> ImagePublic:
    """Stores the file content-addressed (SHA-256); the same content twice in a project is a 409."""
    project = project_or_404(session, project_id)
    name = check_filename(file.filename)
    checked = check_image_bytes(read_upload(file, ctx.settings), ctx.settings)
    from core.storage import sha256

    digest = sha256(checked.data)
    existing = session.scalar(select(Image.id).where(Image.project_id == project.id, Image.sha256 == digest))
    if existing is not None:
        raise ServiceError(ErrorCode.CONFLICT, f"this image is already in project {project.id} as image {existing}")
    ctx.images.put(checked)  # the file first: a row never points to a missing file
    image = Image(project_id=project.id, sha256=digest, filename=name, format=checked.format, mode=checked.mode,
                  width=checked.width, height=checked.height, size_bytes=len(checked.data))
    session.add(image)
    try:
        session.flush()
    except IntegrityError as e:
        raise ServiceError(ErrorCode.CONFLICT, f"this image is already in project {project.id}") from e
    return image_public(session, image)


@router.get("/projects/{project_id}/images", response_model=Page[ImagePublic])
def list_images(project_id: IdPath, session: SessionDep, offset: Offset = 0,
                limit: int = Query(50, ge=1, le=500)) -> Page[ImagePublic]:
    project_or_404(session, project_id)
    total = session.scalar(select(func.count()).select_from(Image).where(Image.project_id == project_id)) or 0
    rows = session.scalars(select(Image).where(Image.project_id == project_id).order_by(Image.id)
                           .offset(offset).limit(limit))
    return Page(items=[image_public(session, i) for i in rows], total=int(total), offset=offset, limit=limit)


@router.get("/images/{image_id}", response_model=ImagePublic)
def get_image(image_id: IdPath, session: SessionDep) -> ImagePublic:
    return image_public(session, image_or_404(session, image_id))


@router.get("/images/{image_id}/file", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/tiff": {}}}})
def get_image_file(image_id: IdPath, session: SessionDep, ctx: CtxDep) -> FileResponse:
    """The original bytes as uploaded."""
    image = image_or_404(session, image_id)
    path = ctx.images.path(image)
    if not path.is_file():
        raise ServiceError(ErrorCode.UNAVAILABLE, f"stored file of image {image_id} is missing")
    return FileResponse(path, media_type=MEDIA.get(image.format, "application/octet-stream"),
                        filename=image.filename, headers={"ETag": f'"{image.sha256}"'})


@router.get("/images/{image_id}/thumbnail", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}}})
def get_thumbnail(image_id: IdPath, session: SessionDep, ctx: CtxDep,
                  size: int = Query(256, ge=16, le=1024, description="longer side in pixels")) -> FileResponse:
    """8-bit RGB PNG no larger than ``size`` (16-bit images rescaled as the model sees them)."""
    image = image_or_404(session, image_id)
    size = min(size, ctx.settings.max_thumbnail_side)
    return FileResponse(ctx.images.thumbnail(image, size, ctx.settings.cache_dir), media_type="image/png")


@router.delete("/images/{image_id}", status_code=204)
def delete_image(image_id: IdPath, session: SessionDep, ctx: CtxDep) -> Response:
    """Deletes the image and its annotation history; the file goes when no project references it."""
    image = image_or_404(session, image_id)
    sha, fmt = image.sha256, image.format
    session.delete(image)
    session.commit()
    if session.scalar(select(Image.id).where(Image.sha256 == sha).limit(1)) is None:
        from ..services.images import FORMATS

        ctx.images.blobs.path(sha, FORMATS.get(fmt, "")).unlink(missing_ok=True)
    return Response(status_code=204)
