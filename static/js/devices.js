// Camera and microphone: open them, list them for the device choice, and show the
// microphone level so people can check their setup before they join.

/** Open camera and microphone; fall back to microphone only, then camera only. */
export async function openMedia({ audioId = "", videoId = "" } = {}) {
  const audio = audioId ? { deviceId: { exact: audioId } } : true;
  const video = videoId ? { deviceId: { exact: videoId } } : true;
  const attempts = [{ audio, video }, { audio }, { video }];
  let lastError = null;
  for (const constraints of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

/** Cameras and microphones (labels are only known after permission was granted). */
export async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    audio: devices.filter((d) => d.kind === "audioinput" && d.deviceId),
    video: devices.filter((d) => d.kind === "videoinput" && d.deviceId),
  };
}

/** Fill a <select> with devices and select the one in use. */
export function fillSelect(select, devices, currentId, fallbackLabel) {
  select.replaceChildren();
  devices.forEach((device, index) => {
    const option = document.createElement("option");
    option.value = device.deviceId;
    option.textContent = device.label || `${fallbackLabel} ${index + 1}`;
    option.selected = device.deviceId === currentId;
    select.append(option);
  });
  select.disabled = devices.length === 0;
}

/** The deviceId of a stream's track of one kind, or "". */
export function deviceIdOf(stream, kind) {
  const track = stream && stream.getTracks().find((t) => t.kind === kind);
  return (track && track.getSettings().deviceId) || "";
}

export function stopStream(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

/**
 * Microphone level on a <meter> (0…1), from an AnalyserNode. Nothing is recorded:
 * the analyser only computes the loudness of the current audio frame.
 */
export class LevelMeter {
  constructor(meter) {
    this.meter = meter;
    this.context = null;
    this.source = null;
    this.frame = null;
  }

  attach(stream) {
    this.detach();
    if (!stream || stream.getAudioTracks().length === 0) return;
    this.context = this.context || new AudioContext();
    // Browsers start audio contexts suspended until the user interacts with the page.
    document.addEventListener("pointerdown", () => this.context && this.context.resume(), {
      once: true,
    });
    this.context.resume().catch(() => {});
    this.source = this.context.createMediaStreamSource(stream);
    const analyser = this.context.createAnalyser();
    analyser.fftSize = 1024;
    this.source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const tick = () => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const sample of samples) sum += sample * sample;
      // RMS, scaled so normal speech fills about half of the meter.
      this.meter.value = Math.min(1, Math.sqrt(sum / samples.length) * 4);
      this.frame = requestAnimationFrame(tick);
    };
    tick();
  }

  detach() {
    cancelAnimationFrame(this.frame);
    if (this.source) this.source.disconnect();
    this.source = null;
    this.meter.value = 0;
  }
}
