"""Password hashes whose passwords were published: never a live login. Pure.

Earlier example settings shipped `demo@example.com` with the password
"change-me" and a fixed salt. A newcomer who kept it ran a server anyone could
use for authenticated relaying. Such hashes are refused wherever they appear.
"""

from __future__ import annotations

# The hashes (and salts) of passwords printed in this project's docs and examples.
PUBLISHED_SALTS = ("$6$demosalt$",)
PUBLISHED = frozenset(
    {
        "$6$demosalt$NXazfWZjDoYd7qzCo61624p2XdRThftlW28YwRRwSS2oUsQJ4o5KvelaH1Lab.7eJUDBRmqNloNXjE53NnqlP0",
    }
)


def is_published(crypt_hash: str) -> bool:
    return crypt_hash in PUBLISHED or crypt_hash.startswith(PUBLISHED_SALTS)
