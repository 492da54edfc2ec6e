"""The API's routers, one module per resource (``api.app`` includes them).

``me_key`` (``POST /v1/me/key``) and ``me_webhook`` (``/v1/me/webhook``) are mounted here on the
router of ``me``, so that key rotation and the webhook live under ``/v1/me`` with the other routes
of the caller's own account.
"""

from api.routes import me, me_key, me_webhook

me.router.include_router(me_key.router)
me.router.include_router(me_webhook.router)
