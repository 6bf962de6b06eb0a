"""What the browser call page costs in latency, against what WebRTC would cost.

Two measurements in Debian's headless Chromium with a fake microphone:

1. **WebRTC in Chromium, on loopback.** Two ``RTCPeerConnection``s in one page
   send the fake microphone to each other (Opus, host candidates only, no
   network delay); printed: the time from ``createOffer`` to both sides
   ``connected`` (ICE and DTLS), and the receiver's mean jitter-buffer delay
   (``inbound-rtp`` ``jitterBufferDelay / jitterBufferEmittedCount``,
   https://www.w3.org/TR/webrtc-stats/#dom-rtcinboundrtpstreamstats-jitterbufferdelay)
   after ``--webrtc-s`` seconds. This is what an aiortc transport would add on top
   of the WebSocket page at the least (aiortc's own jitter buffer on the server
   side comes in addition).
2. **The WebSocket + AudioWorklet page** (``/call``) on ``voicerail serve
   --browser-calls`` with the embedded models: the clinic booking script, and the
   voice-to-voice latency per reply as the page measures it (end of the caller's
   speech in the microphone worklet to the agent's voice in the playback worklet
   plus the output latency, on the AudioContext's clock); and the AudioContext's
   ``baseLatency``/``outputLatency``.

Usage: ``.venv/bin/python bench/browser_latency.py [--webrtc-s 6] [--skip-call]``
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from voicerail.testing.callers import caller_script_wav
from voicerail.testing.server import serve_process

SCRIPT = [
    "I would like to book an appointment.",
    "Next Tuesday at three in the afternoon.",
    "My name is Maria Lopez.",
    "Yes, please book it.",
    "No, that's all. Thank you, goodbye.",
]

WEBRTC_LOOPBACK_JS = """
const [seconds, done] = arguments;
(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  const played = new Promise((resolve) => { b.ontrack = (e) => {
    const audio = new Audio(); audio.srcObject = e.streams[0]; audio.play(); resolve();
  }; });
  stream.getTracks().forEach((t) => a.addTrack(t, stream));
  const connected = (pc) => new Promise((resolve) => {
    if (pc.connectionState === "connected") resolve();
    pc.onconnectionstatechange = () => pc.connectionState === "connected" && resolve();
  });
  const t0 = performance.now();
  const offer = await a.createOffer(); await a.setLocalDescription(offer);
  await b.setRemoteDescription(offer);
  const answer = await b.createAnswer(); await b.setLocalDescription(answer);
  await a.setRemoteDescription(answer);
  await Promise.all([connected(a), connected(b), played]);
  const setupMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  let jb = null, codec = null;
  (await b.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      jb = {delay: s.jitterBufferDelay, emitted: s.jitterBufferEmittedCount,
            target: s.jitterBufferTargetDelay, minimum: s.jitterBufferMinimumDelay,
            codecId: s.codecId};
    }
  });
  (await b.getStats()).forEach((s) => { if (jb && s.id === jb.codecId) codec = s.mimeType; });
  done({setupMs, jb, codec});
})().catch((e) => done({error: String(e)}));
"""


@contextmanager
def chromium(wav: Path | None) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or ""
    profile = tempfile.mkdtemp(prefix="voicerail-chromium-")
    flags = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--user-data-dir={profile}",
    ]
    if wav is not None:
        flags.append(f"--use-file-for-fake-audio-capture={wav}")
    for flag in flags:
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def webrtc_loopback(base_url: str, seconds: float) -> None:
    with chromium(None) as driver:
        driver.set_script_timeout(seconds + 30)
        driver.get(f"{base_url}/call")  # any page of a secure (loopback) origin
        result = driver.execute_async_script(WEBRTC_LOOPBACK_JS, seconds)
    if "error" in result:
        print(f"webrtc loopback failed: {result['error']}")
        return
    jb = result["jb"] or {}
    emitted = jb.get("emitted") or 0
    mean_ms = 1000 * jb["delay"] / emitted if emitted else float("nan")
    print(f"webrtc loopback ({result['codec']}): setup (offer to connected) "
          f"{result['setupMs']:.0f} ms; jitter buffer mean {mean_ms:.1f} ms "
          f"(target {1000 * (jb.get('target') or 0) / max(emitted, 1):.1f} ms) "
          f"over {emitted / 48000:.1f} s")  # fmt: skip


def page_call(base_url: str, work_dir: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    wav = caller_script_wav(SCRIPT, work_dir / "caller.wav", lead_s=22.0, pause_s=12.0, tail_s=60.0)
    with chromium(wav) as driver:
        driver.get(f"{base_url}/call")
        driver.find_element("css selector", "#call").click()

        def state(d: Any) -> str:
            return str(d.execute_script("return document.getElementById('status').dataset.state"))

        WebDriverWait(driver, 300, poll_frequency=1).until(
            lambda d: state(d) in ("ended", "failed")
        )
        latencies = driver.execute_script("return window.voicerailCall.latencies")
        ctx = driver.execute_script(
            "const c = new AudioContext(); const r = [c.sampleRate, c.baseLatency, "
            "c.outputLatency]; c.close(); return r;"
        )
    print(f"page AudioContext: {ctx[0]} Hz, baseLatency {1000 * ctx[1]:.1f} ms, "
          f"outputLatency {1000 * (ctx[2] or 0):.1f} ms")  # fmt: skip
    if latencies:
        print("page voice-to-voice per reply (s): " + ", ".join(f"{s:.2f}" for s in latencies))
        print(f"page voice-to-voice median {statistics.median(latencies):.2f} s over "
              f"{len(latencies)} replies")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webrtc-s", type=float, default=6.0)
    parser.add_argument("--skip-call", action="store_true")
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="voicerail-browser-bench-"))
    # The fake microphone cannot wait: no reprompt may race the script's next line.
    serve_args = [
        "--agent",
        "examples/clinic.yaml",
        "--browser-calls",
        "--reprompt-after",
        "30",
        "--hangup-after",
        "60",
    ]
    with serve_process(serve_args, data_dir=work_dir / "data") as base_url:
        webrtc_loopback(base_url, args.webrtc_s)
        if not args.skip_call:
            page_call(base_url, work_dir)
    shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
