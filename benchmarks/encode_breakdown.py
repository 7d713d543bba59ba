"""Where a new image's time goes on WebGPU: preparing the input (host or device) and encoding.

A seeded random-weight model (``--size``) built from the packaged templates; for each image
side, the median of ``--repeats`` runs of: the host preparation alone (``prepare_image``), and
``encode`` + a download of the smallest embedding tensor (so the GPU work is finished), with
the input made on the host and on the device.

    python benchmarks/encode_breakdown.py --sides 1024 2048 4096
"""

from __future__ import annotations

import argparse
import tempfile

from common import median_ms, random_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--sides", nargs="+", type=int, default=[1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    import numpy as np

    from napari_sam2_webgpu import Sam2Predictor
    from napari_sam2_webgpu.benchmark import test_image
    from napari_sam2_webgpu.image.preprocess import prepare_image

    tmp = tempfile.TemporaryDirectory()
    _, paths = random_model(args.size, tmp.name)
    predictor = Sam2Predictor.from_files(paths.encoder, paths.decoder, "webgpu")
    encoder = predictor.encoder
    device_prep = encoder.preprocessor

    def encoded(image):
        embedding = encoder.encode(image)
        embedding.device.download(embedding.image_embed)  # waits for the GPU

    print(f"{args.size}, {predictor.device}; medians of {args.repeats} runs, ms")
    print("| image | host preparation | encode, input made on the host | encode, on the device |")
    print("| --- | --- | --- | --- |")
    for side in args.sides:
        image = np.asarray(test_image(side))
        host_prep = median_ms(lambda image=image: prepare_image(image), args.repeats)
        encoder.preprocessor = None
        on_host = median_ms(lambda image=image: encoded(image), args.repeats)
        encoder.preprocessor = device_prep
        on_device = median_ms(lambda image=image: encoded(image), args.repeats)
        print(
            f"| {side}² {image.dtype} {image.shape} | {host_prep:.1f} | {on_host:.1f} "
            f"| {on_device:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
