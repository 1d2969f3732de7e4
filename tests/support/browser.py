"""How real Chromium is started for browser tests and the call set-up benchmark.

Debian's Chromium, never a downloaded browser. The flags keep it off the network
(no background fetches, no QUIC), give it a fake camera and microphone, and let WebRTC
gather loopback candidates, which it skips by default.
"""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]
