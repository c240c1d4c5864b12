"""What every panel shares: the client factory, error translation, and the per-session state shapes."""

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from core.settings import Settings

from ..client import ApiError, StudioClient

log = logging.getLogger("sasformer.webui")


@dataclass
class Shared:
    """Components and states the panels read or update across tabs (built in ``webui.app``)."""

    settings: Settings
    project: gr.State  # ProjectPublic dict or None
    image: gr.State  # {"id", "filename", "width", "height", "etag", "revision"} or None
    status: gr.Markdown
    project_dd: gr.Dropdown
    image_dd: gr.Dropdown
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, request: gr.Request | None) -> StudioClient:
        """A client for the API this UI is mounted in: ``ui_api_url`` if set, else the socket the browser
        reached (same process), else the configured host and port."""
        s = self.settings
        token = s.admin_tokens[0] if s.admin_tokens else None
        return StudioClient(api_base(s, request), token=token, user=_user(request))


def _user(request: gr.Request | None) -> str:
    name = getattr(request, "username", None) if request is not None else None
    return f"webui:{name}" if name else "webui"


def api_base(settings: Settings, request: gr.Request | None) -> str:
    if settings.ui_api_url:
        return settings.ui_api_url
    inner = request.request if request is not None else None
    scope = getattr(inner, "scope", None)
    if isinstance(scope, dict) and scope.get("server"):
        host, port = scope["server"][:2]
        host = f"[{host}]" if ":" in str(host) else host
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        return f"{scheme}://{host}:{port}"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def readable(exc: BaseException) -> str:
    """The sentence shown in the page for a failure (never a traceback)."""
    if isinstance(exc, ApiError):
        if exc.status == 412:
            return ("Someone saved this image's labels since you opened it; your edit was NOT applied (nothing "
                    "was overwritten). Press 'Reload labels' to see the current revision, then redo your edit. "
                    f"[{exc.message}]")
        return exc.message
    if isinstance(exc, gr.Error):
        return str(exc.message)
    return f"Unexpected error ({type(exc).__name__}): {exc}"


def ui_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn API errors and bugs into a ``gr.Error`` toast with a readable message (logged with trace)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:  # noqa: BLE001 - every failure must reach the page as a sentence
                if not isinstance(e, ApiError):
                    log.exception("web UI handler %s failed", fn.__name__)
                raise gr.Error(readable(e), duration=None) from e
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001
            if not isinstance(e, ApiError):
                log.exception("web UI handler %s failed", fn.__name__)
            raise gr.Error(readable(e), duration=None) from e
    return wrapper


def need_project(project: dict[str, Any] | None) -> dict[str, Any]:
    if not project:
        raise gr.Error("Pick or create a project first.")
    return project


def need_image(image: dict[str, Any] | None) -> dict[str, Any]:
    if not image:
        raise gr.Error("Pick an image first (upload one if the project has none).")
    return image


def progress_without(outputs: Sequence[Any], *quiet: Any) -> list[Any]:
    """The components an event shows its progress on: its outputs but ``quiet`` (the image editor).

    Why: Gradio 6.31's page refreshes the state of every component that was ever a progress target on each
    status change of any event (``update_loading_stati_state`` -> ``update_state`` -> the component's
    ``get_data``), and the ImageEditor's ``get_data`` renders its background, label layer and composite to
    PNGs and uploads them. Traced in headless chromium: 13-15 such exports per save cycle, two of them
    racing each other before the save handler even starts (docs/PERFORMANCE.md, live-mode latency). An
    editor that is no event's progress target is exported once per save, when the save gathers its inputs.
    """
    return [c for c in outputs if all(c is not q for q in quiet)]
