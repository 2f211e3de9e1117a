"""The conformance suite every store passes: the contract, and the behaviour a user sees.

Use it for your own store (it needs pytest)::

    from flask_serversession.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self) -> Iterator[Store]:
            store = MyStore(...)   # a fresh, empty store, on a real server
            yield store
            store.close()

The inherited tests check the store contract directly (``test_store_*``) and the whole
library on top of the store through Flask's test client, as a browser sees it (``test_app_*``):
cookies, round trips per request, expiry, regeneration, logout, concurrent writers. Each
``test_app_*`` test runs twice: with the cookie, and with the header transport as an API
client sees it (:class:`HeaderClient`: the token in ``Authorization``, no cookie jar).

:class:`CountingStore` wraps any store and counts its calls; the round-trip budget is tested
with it. :class:`PausingStore` pauses any store between its calls, for the user-index
interleavings (``test_store_user_index_*``); a store that takes several steps inside one call
overrides :meth:`StoreConformance.stepped` to pause between those too.
"""

from .app import make_app
from .conformance import StoreConformance
from .doubles import Clock as Clock
from .doubles import CountingStore, PausingStore
from .header_client import HeaderClient

__all__ = ["CountingStore", "HeaderClient", "PausingStore", "StoreConformance", "make_app"]
