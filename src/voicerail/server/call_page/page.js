// The browser call page (voicerail): microphone in, agent audio out, live
// transcript. Protocol: src/voicerail/wire/browser.py. No dependencies.
"use strict";

const callButton = document.getElementById("call");
const hangupButton = document.getElementById("hangup");
const statusLine = document.getElementById("status");
const transcript = document.getElementById("transcript");
const keypad = document.getElementById("keypad");

function setStatus(state, text) {
  statusLine.dataset.state = state;
  statusLine.textContent = text || state;
}

function addLine(role, text) {
  const item = document.createElement("li");
  item.className = role;
  item.textContent = text; // text, never HTML
  transcript.appendChild(item);
}

let call = null;
// The call as the caller hears it, for the page and for bench/browser_latency.py:
// voice-to-voice latency per reply (end of the caller's speech in the microphone
// to the agent's voice at the speaker, seconds, on the AudioContext clock).
window.voicerailCall = { latencies: [] };

async function startCall() {
  callButton.disabled = true;
  setStatus("connecting");
  transcript.replaceChildren();
  let stream;
  const ctx = new AudioContext({ latencyHint: "interactive" });
  try {
    await ctx.audioWorklet.addModule("/call/worklet.js");
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    await ctx.close();
    setStatus("failed", "no microphone: " + err.name);
    callButton.disabled = false;
    return;
  }
  await ctx.resume();
  const capture = new AudioWorkletNode(ctx, "capture", { numberOfInputs: 1, numberOfOutputs: 0 });
  const playback = new AudioWorkletNode(ctx, "playback", {
    numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
  });
  ctx.createMediaStreamSource(stream).connect(capture);
  playback.connect(ctx.destination);

  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/call/media");
  ws.binaryType = "arraybuffer";
  // A mark is "played" when the listener hears it: the worklet renders a block,
  // the output path adds baseLatency + outputLatency. Every report waits that
  // long, so "played" and "cleared" keep their order.
  const delayMs = 1000 * ((ctx.baseLatency || 0) + (ctx.outputLatency || 0));
  let started = false;
  const send = (message) => { if (ws.readyState === WebSocket.OPEN) ws.send(message); };
  const sendLater = (message) => setTimeout(() => send(JSON.stringify(message)), delayMs);

  ws.onopen = () => send(JSON.stringify({ event: "start", sampleRateHz: ctx.sampleRate }));
  const outputDelayS = delayMs / 1000;
  let speechEnd = null;
  capture.port.onmessage = (e) => {
    if (e.data instanceof ArrayBuffer) {
      if (started) send(e.data);
    } else if (e.data.type === "speech-end") {
      speechEnd = e.data.at;
    }
  };
  playback.port.onmessage = (e) => {
    if (e.data.type === "played") sendLater({ event: "played", mark: e.data.name });
    else if (e.data.type === "cleared") sendLater({ event: "cleared" });
    else if (e.data.type === "voice" && speechEnd !== null) {
      const latency = e.data.at + outputDelayS - speechEnd;
      speechEnd = null;
      window.voicerailCall.latencies.push(latency);
      setStatus("in-call", "in call; last reply heard " + latency.toFixed(2) + " s after you stopped");
    }
  };
  ws.onmessage = (e) => {
    if (typeof e.data !== "string") {
      playback.port.postMessage({ type: "audio", buffer: e.data }, [e.data]);
      return;
    }
    const message = JSON.parse(e.data);
    if (message.event === "started") {
      started = true;
      statusLine.dataset.callRef = message.callRef;
      setStatus("in-call", "in call");
      hangupButton.disabled = false;
      keypad.hidden = false;
    } else if (message.event === "mark") {
      playback.port.postMessage({ type: "mark", name: message.name });
    } else if (message.event === "clear") {
      playback.port.postMessage({ type: "clear" });
    } else if (message.event === "transcript") {
      addLine(message.role, message.text);
    }
  };
  ws.onclose = (e) => {
    started = false;
    stream.getTracks().forEach((t) => t.stop());
    ctx.close();
    hangupButton.disabled = true;
    keypad.hidden = true;
    callButton.disabled = false;
    call = null;
    const why = e.code === 1000 ? "" : " (" + e.code + (e.reason ? ": " + e.reason : "") + ")";
    setStatus("ended", "call ended" + why);
  };
  call = { ws, send };
}

function hangUp() {
  if (!call) return;
  call.send(JSON.stringify({ event: "hangup" }));
  call.ws.close(1000);
}

for (const key of "123456789*0#") {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = key;
  button.addEventListener("click", () => call && call.send(JSON.stringify({ event: "dtmf", digit: key })));
  keypad.appendChild(button);
}
callButton.addEventListener("click", startCall);
hangupButton.addEventListener("click", hangUp);
