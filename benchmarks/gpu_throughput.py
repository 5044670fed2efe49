"""Training throughput side by side: kerasrecipes' own path vs. a hand-jitted Keras step vs. timm.

Runs under KERAS_BACKEND=jax (set here unless already set). On the lent GPU machine (JAX+CUDA,
torch, timm; no TensorFlow), carry the keras/namex/optree wheels and the project, then:

    python benchmarks/gpu_throughput.py --out $OUT/gpu_throughput.json

On a CPU, `--quick` runs the same code paths at toy sizes (CI keeps the script from rotting):

    python benchmarks/gpu_throughput.py --quick

For each model (ResNet50, EfficientNetV2B0, EfficientNet-Lite0 at 224 px, batch 256, bf16):
(a) kerasrecipes: in-memory uint8 images → `kr.build_classifier` (on-device augment/preprocess)
    → `kr.fit_one_cycle` (one-cycle LR + momentum cycled inside the optimizer step);
(b) ceiling for Keras: a hand-written `jax.jit` step of `stateless_call` + `stateless_apply` on
    device-resident data;
(c) timm with `torch.compile`, bf16 autocast and channels_last (eager in `--quick`).
Prints img/s, (a)/(b), (a)/(c) and model FLOPs utilisation, compile times separately.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

# Multiply-accumulates per 224 px image (forward); training ≈ 3× forward, 2 FLOPs per MAC.
GMACS_224 = {"resnet50": 4.09, "efficientnetv2b0": 0.72, "efficientnet_lite0": 0.40}
TIMM_NAMES = {"resnet50": "resnet50", "efficientnetv2b0": "tf_efficientnetv2_b0",
              "efficientnet_lite0": "tf_efficientnet_lite0"}


def _data(batch, size, batches, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (batch * batches, size, size, 3)).astype("uint8")
    y = rng.integers(0, 1000, batch * batches).astype("int32")
    return x, y


class _Timer:
    """Wall time of the batches after `warmup` (blocks on the loss value at each timed end)."""

    def __init__(self, warmup):
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                outer.ends.append(time.perf_counter())

            def on_train_begin(self, logs=None):
                outer.start = time.perf_counter()

        self.warmup = warmup
        self.ends = []
        self.callback = Callback()

    def images_per_second(self, batch):
        timed = self.ends[self.warmup:]
        return batch * (len(timed) - 1) / (timed[-1] - timed[0])

    def first_step_seconds(self):
        return self.ends[0] - self.start


def kerasrecipes_path(name, x, y, batch, size, warmup):
    import kerasrecipes as kr

    model = kr.build_classifier(name, num_classes=1000, image_size=size, weights=None,
                                augment="light")
    data = kr.array_datasets(x, y, batch_size=batch, seed=0)
    timer = _Timer(warmup)
    kr.fit_one_cycle(model, data.train, epochs=1, lr=0.1, optimizer="sgd",
                     callbacks=[timer.callback], verbose=0)
    return timer.images_per_second(batch), timer.first_step_seconds()


def jitted_keras_step(name, x, y, batch, size, warmup, steps):
    import jax
    import keras

    import kerasrecipes as kr

    model = kr.build_classifier(name, num_classes=1000, image_size=size, weights=None)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)

    def loss_fn(trainable, non_trainable, images, labels):
        probs, non_trainable = model.stateless_call(trainable, non_trainable, images,
                                                    training=True)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, probs))
        return loss, non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @jax.jit
    def step(state, images, labels):
        trainable, non_trainable, opt_vars = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, images, labels)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return (trainable, non_trainable, opt_vars), loss

    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    images = jax.device_put(x[:batch])
    labels = jax.device_put(y[:batch])
    start = time.perf_counter()
    state, loss = step(state, images, labels)
    loss.block_until_ready()
    compile_seconds = time.perf_counter() - start
    for _ in range(warmup):
        state, loss = step(state, images, labels)
    loss.block_until_ready()
    start = time.perf_counter()
    for _ in range(steps):
        state, loss = step(state, images, labels)
    loss.block_until_ready()
    return batch * steps / (time.perf_counter() - start), compile_seconds


def timm_step(name, x, y, batch, size, warmup, steps, compile_model):
    try:
        import timm
        import torch
    except ImportError:
        return None, None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = timm.create_model(TIMM_NAMES[name], num_classes=1000).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step_model = torch.compile(model) if compile_model else model
    images = torch.from_numpy(x[:batch]).to(device).permute(0, 3, 1, 2).float().div(255)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(y[:batch]).long().to(device)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(step_model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    step()
    sync()
    compile_seconds = time.perf_counter() - start
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - start), compile_seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="resnet50,efficientnetv2b0,efficientnet_lite0")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of the accelerator (H100/H200 SXM: 989)")
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes for a CPU: batch 4, 64 px, 3 steps, float32, timm eager")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.size, args.steps, args.warmup = 4, 64, 3, 1
        args.precision = "float32"

    import keras

    import kerasrecipes as kr

    kr.set_precision(args.precision)
    results = []
    for name in args.models.split(","):
        x, y = _data(args.batch, args.size, args.warmup + args.steps + 1)
        a, a_first = kerasrecipes_path(name, x, y, args.batch, args.size, args.warmup)
        b, b_compile = jitted_keras_step(name, x, y, args.batch, args.size, args.warmup,
                                         args.steps)
        c, c_compile = timm_step(name, x, y, args.batch, args.size, args.warmup, args.steps,
                                 compile_model=not args.quick)
        flops = 3 * 2 * GMACS_224[name] * 1e9 * (args.size / 224) ** 2
        results.append({
            "model": name, "batch": args.batch, "size": args.size,
            "precision": args.precision, "backend": keras.backend.backend(),
            "kerasrecipes_img_s": a, "kerasrecipes_first_step_s": a_first,
            "jitted_keras_img_s": b, "jitted_keras_compile_s": b_compile,
            "timm_img_s": c, "timm_compile_s": c_compile,
            "mfu_kerasrecipes": a * flops / (args.peak_tflops * 1e12),
        })
        print(f"[bench] {name}: done", flush=True)

    print(f"\nbackend {keras.backend.backend()}, batch {args.batch}, {args.size} px, "
          f"{args.precision}")
    header = ("model", "(a) kerasrecipes img/s", "(b) jitted Keras img/s", "(c) timm img/s",
              "(a)/(b)", "(a)/(c)", "MFU (a)", "compile (a) / (b) / (c) s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        c = r["timm_img_s"]
        print("| " + " | ".join([
            r["model"], f"{r['kerasrecipes_img_s']:.0f}", f"{r['jitted_keras_img_s']:.0f}",
            f"{c:.0f}" if c else "n/a", f"{r['kerasrecipes_img_s'] / r['jitted_keras_img_s']:.2f}",
            f"{r['kerasrecipes_img_s'] / c:.2f}" if c else "n/a", f"{r['mfu_kerasrecipes']:.1%}",
            f"{r['kerasrecipes_first_step_s']:.1f} / {r['jitted_keras_compile_s']:.1f} / "
            + (f"{r['timm_compile_s']:.1f}" if c else "n/a"),
        ]) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
