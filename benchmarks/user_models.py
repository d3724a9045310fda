"""The models users copy (issue 21): each public-example shape built here, trained a few epochs on generated data,
saved with model.save(), then converted (fp32, int8) and streamed (fp32, int8) through edgeseq's API as a user would.

    .venv/bin/python benchmarks/user_models.py [--out benchmarks/results/user_models] [--only kws,two_input]

Prints one markdown table: shape x recipe x (converts, route, parity max|diff|, metric of the .tflite vs Keras,
streams, step parity), and writes the rows as JSON beside the models. Not a test: about 10-15 minutes on 2 shared
cores. Shapes: the Keras docs' timeseries-classification Transformer ([96, 1], LayerNorm eps 1e-6, Conv1D(k=1) FF,
GlobalAveragePooling1D(channels_first)); the text Transformer with the user's own registered layers
(--custom-objects); the IMDB bidirectional LSTM with a sigmoid head; a two-input model (sequence + static features);
a keyword-spotting CRNN with a Conv2D front end; a per-frame sigmoid tagger with float 0/1 labels; a weather LSTM with
an adapted Normalization layer; a causal CRNN with global average and max pooling over time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

MY_LAYERS = textwrap.dedent('''
    import keras
    from keras import layers, ops


    @keras.saving.register_keras_serializable(package="my_layers")
    class TransformerBlock(layers.Layer):
        def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kwargs):
            super().__init__(**kwargs)
            self.embed_dim, self.num_heads, self.ff_dim, self.rate = embed_dim, num_heads, ff_dim, rate
            self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
            self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
            self.dropout1, self.dropout2 = layers.Dropout(rate), layers.Dropout(rate)

        def call(self, inputs, training=False):
            attn = self.dropout1(self.att(inputs, inputs), training=training)
            out1 = self.layernorm1(inputs + attn)
            return self.layernorm2(out1 + self.dropout2(self.ffn(out1), training=training))

        def get_config(self):
            return {**super().get_config(), "embed_dim": self.embed_dim, "num_heads": self.num_heads,
                    "ff_dim": self.ff_dim, "rate": self.rate}


    @keras.saving.register_keras_serializable(package="my_layers")
    class TokenAndPositionEmbedding(layers.Layer):
        def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
            super().__init__(**kwargs)
            self.maxlen, self.vocab_size, self.embed_dim = maxlen, vocab_size, embed_dim
            self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
            self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

        def call(self, x):
            positions = self.pos_emb(ops.arange(start=0, stop=ops.shape(x)[-1], step=1))
            return self.token_emb(x) + positions

        def get_config(self):
            return {**super().get_config(), "maxlen": self.maxlen, "vocab_size": self.vocab_size,
                    "embed_dim": self.embed_dim}
''')


def _split(X, y, n_train):
    if isinstance(X, dict):
        return ({f"X_train_{k}": v[:n_train] for k, v in X.items()} | {f"X_test_{k}": v[n_train:] for k, v in X.items()}
                | {"y_train": y[:n_train], "y_test": y[n_train:]})
    return {"X_train": X[:n_train], "y_train": y[:n_train], "X_test": X[n_train:], "y_test": y[n_train:]}


def _fit(model, arrays, loss, epochs, lr=3e-3, metric="accuracy"):
    import keras

    keys = sorted(k for k in arrays if k.startswith("X_train"))
    X = arrays["X_train"] if keys == ["X_train"] else {k[len("X_train_"):]: arrays[k] for k in keys}
    model.compile(keras.optimizers.Adam(lr), loss, metrics=[metric])
    model.fit(X, arrays["y_train"], epochs=epochs, batch_size=32, verbose=0)


def timeseries_transformer(rng):
    import keras
    from keras import layers

    T = 96
    X = rng.normal(size=(1000, T, 1)).astype(np.float32) * 0.5
    y = rng.integers(0, 2, 1000)
    X[y == 1, :, 0] += np.sin(np.linspace(0, 6 * np.pi, T)).astype(np.float32)
    X[y == 0, :, 0] += np.sign(np.sin(np.linspace(0, 6 * np.pi, T))).astype(np.float32) * 0.8

    def encoder(inputs):
        x = layers.MultiHeadAttention(key_dim=16, num_heads=2, dropout=0.1)(inputs, inputs)
        x = layers.LayerNormalization(epsilon=1e-6)(layers.Dropout(0.1)(x))
        res = x + inputs
        x = layers.Dropout(0.1)(layers.Conv1D(filters=4, kernel_size=1, activation="relu")(res))
        x = layers.LayerNormalization(epsilon=1e-6)(layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x))
        return x + res

    inp = keras.Input(shape=(T, 1))
    x = encoder(encoder(inp))
    x = layers.GlobalAveragePooling1D(data_format="channels_first")(x)
    x = layers.Dropout(0.1)(layers.Dense(32, activation="relu")(x))
    model = keras.Model(inp, layers.Dense(2, activation="softmax")(x))
    arrays = _split(X, y, 600)
    _fit(model, arrays, "sparse_categorical_crossentropy", 8)
    return model, arrays, {}


def text_transformer(rng, root):
    import keras
    from keras import layers

    (root / "my_layers.py").write_text(MY_LAYERS)
    sys.path.insert(0, str(root))
    import my_layers  # noqa: F401 - the user's module, as their training script imports it

    T, V = 32, 200
    X = rng.integers(1, V, (1000, T))
    y = (np.isin(X, np.arange(1, 20)).sum(1) > np.isin(X, np.arange(20, 39)).sum(1)).astype(np.int64)
    inp = keras.Input(shape=(T,), dtype="int32")
    x = my_layers.TokenAndPositionEmbedding(T, V, 32)(inp)
    x = my_layers.TransformerBlock(32, 2, 32)(x)
    x = layers.Dropout(0.1)(layers.GlobalAveragePooling1D()(x))
    x = layers.Dropout(0.1)(layers.Dense(20, activation="relu")(x))
    model = keras.Model(inp, layers.Dense(2, activation="softmax")(x))
    arrays = _split(X, y, 600)
    _fit(model, arrays, "sparse_categorical_crossentropy", 10)
    return model, arrays, {"custom_objects": [str(root / "my_layers.py")]}


def imdb_bilstm(rng):
    import keras
    from keras import layers

    T, V = 40, 500
    X = rng.integers(1, V, (1000, T))
    y = (np.isin(X, np.arange(1, 40)).sum(1) >= 3).astype(np.int64)
    inp = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(V, 16)(inp)
    x = layers.Bidirectional(layers.LSTM(16, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(16))(x)
    model = keras.Model(inp, layers.Dense(1, activation="sigmoid")(x))
    arrays = _split(X, y, 600)
    _fit(model, arrays, "binary_crossentropy", 8)
    return model, arrays, {"seq_len": T}


def two_input(rng):
    import keras
    from keras import layers

    T, F = 24, 4
    X = rng.normal(size=(1000, T, F)).astype(np.float32)
    S = rng.normal(size=(1000, 3)).astype(np.float32)
    y = ((X[:, :, 0].mean(1) * 4 + S[:, 0]) > 0).astype(np.int64) + (S[:, 1] > 0.8)
    seq, static = keras.Input((T, F), name="sensors"), keras.Input((3,), name="static")
    x = layers.Concatenate()([layers.GRU(16)(seq), layers.Dense(8, activation="relu")(static)])
    model = keras.Model([seq, static], layers.Dense(3, activation="softmax")(x))
    arrays = _split({"sensors": X, "static": S}, y, 600)
    _fit(model, arrays, "sparse_categorical_crossentropy", 20)
    return model, arrays, {}


def kws_crnn(rng):
    import keras
    from keras import layers

    T, F = 49, 20
    X = rng.normal(size=(1000, T, F)).astype(np.float32)
    y = rng.integers(0, 4, 1000)
    for c in range(4):
        start = rng.integers(5, 30, int((y == c).sum()))
        for row, s in zip(np.where(y == c)[0], start, strict=True):
            X[row, s : s + 12, 4 * c : 4 * c + 4] += 1.0
    inp = keras.Input((T, F))
    x = layers.Reshape((T, F, 1))(inp)
    x = layers.Conv2D(8, (3, 3), padding="valid", activation="relu")(x)
    x = layers.Reshape((T - 2, (F - 2) * 8))(x)
    x = layers.GRU(24, return_sequences=True)(x)
    x = layers.GRU(24)(x)
    model = keras.Model(inp, layers.Dense(4, activation="softmax")(x))
    arrays = _split(X, y, 600)
    _fit(model, arrays, "sparse_categorical_crossentropy", 12)
    return model, arrays, {}


def frame_tagger(rng):
    import keras
    from keras import layers

    T, F = 40, 3
    X = rng.normal(size=(1000, T, F)).astype(np.float32)
    y = (np.cumsum(X[..., 0], axis=1) > 0).astype(np.float32)  # float 0/1 [N, T]
    inp = keras.Input((T, F))
    model = keras.Model(inp, layers.Dense(1, activation="sigmoid")(layers.GRU(16, return_sequences=True)(inp)))
    arrays = _split(X, y, 600)
    _fit(model, arrays, "binary_crossentropy", 10)
    return model, arrays, {}


def weather_lstm(rng):
    import keras
    from keras import layers

    T, F = 72, 7
    base = np.cumsum(rng.normal(size=(1000, T + 1, F)), axis=1).astype(np.float32) * [1, 10, 3, 0.5, 100, 2, 5]
    base += np.array([10, 990, 280, 5, 1000, 8, 180], np.float32)
    X, y = base[:, :T].astype(np.float32), base[:, T, 1:2].astype(np.float32)
    norm = layers.Normalization()
    norm.adapt(X[:600].reshape(-1, F))
    inp = keras.Input((T, F))
    model = keras.Model(inp, layers.Dense(1)(layers.LSTM(32)(norm(inp))))
    y_scaled = (y - y[:600].mean()) / y[:600].std()
    arrays = _split(X, y_scaled.astype(np.float32), 600)
    _fit(model, arrays, "mse", 10, metric="mae")
    return model, arrays, {}


def pooling_crnn(rng):
    import keras
    from keras import layers

    T, F = 32, 4
    X = rng.normal(size=(1000, T, F)).astype(np.float32)
    X[:, :, 0] += rng.choice([-0.5, 0.5], size=(1000, 1))
    y = (X[:, :, 0].mean(1) > 0).astype(np.int64) + 2 * (X[:, :, 1].max(1) > 2.4)
    inp = keras.Input((T, F))
    h = layers.GRU(16, return_sequences=True)(layers.Conv1D(12, 3, padding="causal", activation="relu")(inp))
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(h), layers.GlobalMaxPooling1D()(h)])
    model = keras.Model(inp, layers.Dense(4, activation="softmax")(x))
    arrays = _split(X, y, 600)
    _fit(model, arrays, "sparse_categorical_crossentropy", 15, lr=1e-2)
    return model, arrays, {}


SHAPES = {
    "timeseries_transformer": timeseries_transformer, "text_transformer": text_transformer,
    "imdb_bilstm": imdb_bilstm, "two_input": two_input, "kws_crnn": kws_crnn, "frame_tagger": frame_tagger,
    "weather_lstm": weather_lstm, "pooling_crnn": pooling_crnn,
}


def _metric(v: dict, key: str) -> tuple[str, float | None]:
    m = v.get(key) or {}
    for name in ("accuracy", "mse"):
        if name in m:
            return name, m[name]
    return "", None


def _row(shape: str, mode: str, r) -> dict:
    row = {"shape": shape, "recipe": r.recipe.slug, "form": mode, "converts": r.ok}
    if not r.ok:
        return row | {"error": r.error.one_line()[:300]}
    m, v = r.manifest, r.validation
    route = m["route"]
    row["route"] = ("plain (fallback)" if route.get("fallback") else f"stream {m['stream']['kind']}"
                    if mode == "stream" else f"rebuild, rnn {route.get('rnn')}")
    row["parity"] = v.get("passed")
    row["max_abs_diff"] = v.get("max_abs_diff")
    row["agreement"] = v.get("top1_agreement")
    name, keras_value = _metric(v, "keras_metrics")
    _, tfl_value = _metric(v, "tflite_metrics")
    row["metric"], row["keras"], row["tflite"] = name, keras_value, tfl_value
    row["reading"] = (v.get("tflite_metrics") or {}).get("reading")
    if mode == "stream":
        row["per_step"] = v.get("per_step")
        row["delay"] = m["stream"].get("delay_steps", 0)
        row["held"] = [h["name"] for h in m["stream"].get("held", [])]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/user_models")
    ap.add_argument("--only", default=None, help="comma-separated shapes")
    args = ap.parse_args()
    import keras

    from edgeseq.api import convert
    from edgeseq.core.errors import EdgeseqError

    root = Path(args.out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for shape, build in SHAPES.items():
        if args.only and shape not in args.only.split(","):
            continue
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        folder = root / shape
        folder.mkdir(exist_ok=True)
        model, arrays, options = build(rng, folder) if shape == "text_transformer" else build(rng)
        model.save(folder / f"{shape}.keras")
        np.savez(folder / f"{shape}.npz", **arrays)
        print(f"== {shape}", flush=True)
        common = dict(dataset=str(folder / f"{shape}.npz"), raise_on_error=False, **options)
        for mode in ("batch", "stream"):
            try:
                results = convert(folder / f"{shape}.keras", "fp32,int8", out=folder / mode,
                                  stream=mode == "stream", **common)
            except EdgeseqError as exc:  # refused before any recipe (e.g. a non-causal model's stream)
                rows.append({"shape": shape, "recipe": "fp32,int8", "form": mode, "converts": False,
                             "error": exc.one_line()[:300]})
                print(json.dumps(rows[-1]), flush=True)
                continue
            for r in results:
                rows.append(_row(shape, mode, r))
                print(json.dumps(rows[-1]), flush=True)
    (root / "rows.json").write_text(json.dumps(rows, indent=1))
    print("\n| shape | recipe | form | converts | route | parity (max abs diff) | metric: tflite vs keras | "
          "notes |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        if not r["converts"]:
            print(f"| {r['shape']} | {r['recipe']} | {r['form']} | no | - | - | - | {r['error'][:150]} |")
            continue
        delta = (r["tflite"] - r["keras"]) * (100 if r["metric"] == "accuracy" else 1) if r["keras"] is not None \
            else None
        unit = " pt" if r["metric"] == "accuracy" else ""
        metric = (f"{r['metric']} {r['tflite']:.4f} vs {r['keras']:.4f} ({delta:+.2f}{unit})" if delta is not None
                  else "-")
        notes = []
        if r.get("per_step"):
            notes.append("per-step parity")
        if r.get("delay"):
            notes.append(f"delay {r['delay']}")
        if r.get("held"):
            notes.append(f"held {','.join(r['held'])}")
        if r.get("reading"):
            notes.append(r["reading"].split(":")[0])
        print(f"| {r['shape']} | {r['recipe']} | {r['form']} | yes | {r['route']} | "
              f"{'ok' if r['parity'] else 'FAILED'} ({r['max_abs_diff']:.2g}) | {metric} | {'; '.join(notes)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
