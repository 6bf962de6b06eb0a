// AudioWorklet processors of the browser call page (voicerail, wire/browser.py).
// "capture": the microphone, posted to the page in 20 ms blocks of PCM16.
// "playback": the agent's PCM16, played in order; a mark is posted back when
// every sample queued before it has been rendered; "clear" drops the queue.
// Both also report, on the AudioContext's clock (currentTime, seconds), when the
// caller's speech ends and when the agent's voice starts after a pause: the page
// shows the voice-to-voice latency the caller hears from these.

const AUDIBLE = 0.02; // peak, full scale 1.0 (about -34 dBFS)
const PAUSE_S = 0.3; // this much quiet ends speech

function peak(samples, end) {
  let p = 0;
  for (let i = 0; i < end; i++) p = Math.max(p, Math.abs(samples[i]));
  return p;
}

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Int16Array(Math.round(sampleRate * 0.02));
    this.filled = 0;
    this.lastAudible = null; // end of the last audible block, while speaking
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    const end = currentTime + channel.length / sampleRate;
    if (peak(channel, channel.length) > AUDIBLE) {
      this.lastAudible = end;
    } else if (this.lastAudible !== null && end - this.lastAudible > PAUSE_S) {
      this.port.postMessage({ type: "speech-end", at: this.lastAudible });
      this.lastAudible = null;
    }
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.block[this.filled++] = s < 0 ? s * 32768 : s * 32767;
      if (this.filled === this.block.length) {
        const out = this.block.slice(0);
        this.port.postMessage(out.buffer, [out.buffer]);
        this.filled = 0;
      }
    }
    return true;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // Float32Array chunks and {mark: name} items, in order
    this.offset = 0; // samples of queue[0] already played
    this.lastAudible = -Infinity; // when the agent was last heard
    this.port.onmessage = (e) => this.receive(e.data);
  }

  receive(data) {
    if (data.type === "audio") {
      const pcm = new Int16Array(data.buffer);
      const chunk = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) chunk[i] = pcm[i] / 32768;
      this.queue.push(chunk);
    } else if (data.type === "mark") {
      this.queue.push({ mark: data.name });
    } else if (data.type === "clear") {
      this.queue = [];
      this.offset = 0;
      this.port.postMessage({ type: "cleared" });
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (this.queue.length) {
      const head = this.queue[0];
      if (head.mark !== undefined) {
        // Everything before it has been rendered (from the block before this one on).
        this.port.postMessage({ type: "played", name: head.mark, frame: currentFrame + i });
        this.queue.shift();
        continue;
      }
      if (i === out.length) break;
      const n = Math.min(out.length - i, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), i);
      i += n;
      this.offset += n;
      if (this.offset === head.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    out.fill(0, i);
    if (peak(out, i) > AUDIBLE) {
      if (currentTime - this.lastAudible > PAUSE_S) this.port.postMessage({ type: "voice", at: currentTime });
      this.lastAudible = currentTime + out.length / sampleRate;
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    return true;
  }
}

registerProcessor("capture", Capture);
registerProcessor("playback", Playback);
