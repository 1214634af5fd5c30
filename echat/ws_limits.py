"""How big a WebSocket message may be, enforced by hypercorn before echat sees it.

hypercorn buffers a message until it is complete and closes the connection with 1009 (message
too big) once it passes `websocket_max_message_size`, counted in characters for text and bytes
for binary. echat sets that limit to the request body limit (`--max-body`), raised if need be so
that any message the contract accepts fits: `--max-text` characters, each of which a client may
send JSON-escaped (an emoji as a surrogate pair, `\\ud83d\\ude00`: 12 characters), plus the frame
around the text. Smaller messages that break the contract get error frames from echat instead.

permessage-deflate is declined. hypercorn offers it to every client that asks, and wsproto
inflates each received chunk in full before hypercorn counts it, so a few kilobytes of
compressed zeros became tens of megabytes in memory before the connection was refused; chat
frames are short, and compressing them would also cost a compressor's memory per socket.
"""

from __future__ import annotations

from hypercorn.protocol import ws_stream
from wsproto.extensions import PerMessageDeflate

from echat.config import Config

# The JSON around the text of a message frame: braces, the key, a nonce of up to 64 characters
# (escaped, 12 characters each at most).
FRAME_OVERHEAD = 1024
MAX_ESCAPED_CHAR = len("\\ud83d\\ude00")


def max_message_size(config: Config) -> int:
    return max(config.max_body, config.max_text * MAX_ESCAPED_CHAR + FRAME_OVERHEAD)


class DeclinedDeflate(PerMessageDeflate):
    """permessage-deflate as hypercorn knows it, but never accepted in a handshake."""

    def accept(self, offer: str) -> None:
        return None


def decline_compression() -> None:
    """Make hypercorn's WebSocket handshakes decline permessage-deflate (idempotent).

    hypercorn builds the extension list of each handshake from the name `PerMessageDeflate` in
    its ws_stream module and has no setting for it, so the name is replaced there.
    """
    ws_stream.PerMessageDeflate = DeclinedDeflate
