"""The API's routers, one module per resource (``api.app`` includes them).

``me_key`` (``POST /v1/me/key``) is mounted here on the router of ``me``, so that key rotation
lives under ``/v1/me`` with the other routes of the caller's own account.
"""

from api.routes import me, me_key

me.router.include_router(me_key.router)
