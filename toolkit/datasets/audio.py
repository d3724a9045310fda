"""Audio front end with numpy only: read a PCM WAV (stdlib `wave`), fix its length, compute log-mel frames.

The same numbers must run on a device (a keyword-spotting front end), so they are plain and fixed:
8 kHz audio, 1.0 s per clip (centered, zero-padded or cropped), 40 ms Hann frames (320 samples, periodic window,
zero-padded to a 512-point FFT), 20 ms hop (160 samples) -> 49 frames, power spectrum, 32 triangular mel bands
(HTK mel scale, 20 Hz - 4 kHz, peak 1), then log(mel + 1e-6).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from edgeseq.core.errors import DatasetError

FEATURE_PARAMS = {
    "sample_rate": 8000, "clip_seconds": 1.0, "frame_length": 320, "hop_length": 160, "n_fft": 512,
    "window": "hann (periodic)", "n_mels": 32, "fmin": 20.0, "fmax": 4000.0, "mel_scale": "htk",
    "spectrum": "power", "log_offset": 1e-6, "clip_alignment": "center, zero-pad or crop",
}


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate. 8/16/32-bit PCM; channels are averaged."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, width, channels, n = w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as exc:
        raise DatasetError(f"not a readable PCM WAV file: {path} ({exc})", "re-download the data set") from exc
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        raise DatasetError(f"unsupported WAV sample width {8 * width} bits: {path}", "use 8, 16 or 32-bit PCM")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return x, rate


def fix_length(x: np.ndarray, n: int) -> np.ndarray:
    """Center the clip in `n` samples: crop the middle of a long clip, zero-pad a short one on both sides."""
    if len(x) >= n:
        start = (len(x) - n) // 2
        return x[start : start + n]
    out = np.zeros(n, dtype=np.float32)
    start = (n - len(x)) // 2
    out[start : start + len(x)] = x
    return out


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mels: int = 32, n_fft: int = 512, sample_rate: int = 8000, fmin: float = 20.0,
                   fmax: float = 4000.0) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] triangular filters on the HTK mel scale, each with peak 1."""
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.float64(fmin)), _hz_to_mel(np.float64(fmax)), n_mels + 2))
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lower) / (center - lower)
    down = (upper - freqs[:, None]) / (upper - center)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def log_mel(clips: np.ndarray, *, frame_length: int = 320, hop_length: int = 160, n_fft: int = 512,
            n_mels: int = 32, sample_rate: int = 8000, fmin: float = 20.0, fmax: float = 4000.0,
            log_offset: float = 1e-6, batch: int = 256) -> np.ndarray:
    """Log-mel frames of equal-length clips [N, S] -> float32 [N, frames, n_mels] (frames = 1 + (S - frame) // hop)."""
    clips = np.atleast_2d(np.asarray(clips, dtype=np.float32))
    n_frames = 1 + (clips.shape[1] - frame_length) // hop_length
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(frame_length) / frame_length)).astype(np.float32)
    fbank = mel_filterbank(n_mels, n_fft, sample_rate, fmin, fmax)
    out = np.empty((clips.shape[0], n_frames, n_mels), dtype=np.float32)
    for start in range(0, clips.shape[0], batch):
        chunk = clips[start : start + batch]
        frames = np.lib.stride_tricks.sliding_window_view(chunk, frame_length, axis=1)[:, ::hop_length][:, :n_frames]
        spec = np.fft.rfft(frames * window, n=n_fft, axis=-1)
        power = (spec.real**2 + spec.imag**2).astype(np.float32)
        out[start : start + batch] = np.log(power @ fbank + log_offset)
    return out


def clip_features(paths: list[Path], sample_rate: int = 8000, clip_seconds: float = 1.0) -> np.ndarray:
    """Read, check the rate, fix the length, and compute log-mel frames for a list of WAV files."""
    n = int(round(sample_rate * clip_seconds))
    clips = np.empty((len(paths), n), dtype=np.float32)
    for i, p in enumerate(paths):
        x, rate = read_wav(p)
        if rate != sample_rate:
            raise DatasetError(f"{p.name}: sample rate {rate} Hz, expected {sample_rate} Hz",
                               "resample the recordings to 8 kHz")
        clips[i] = fix_length(x, n)
    return log_mel(clips, sample_rate=sample_rate)
