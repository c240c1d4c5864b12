"""SASFormer Studio's web UI: a Gradio Blocks app mounted into the API process at ``/ui``.

Gradio's analytics and the Hugging Face hub must stay off (the service runs offline and must not phone
home), so the variables are set here, before anything imports gradio.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
