#!/usr/bin/env python
"""What SAOL costs against GAP-FC on the same backbone: parameters, MACs,
training and inference images/s, peak training memory (see
:mod:`mmsaol.apis.benchmark`).

    python tools/benchmark.py configs/resnet50_saol_imagenet.py \
        [--input-size 224] [--batch-size 32] [--device cpu|cuda] [--amp]
    python tools/benchmark.py --backbone resnet50 --input-size 224 \
        --num-classes 1000 [--iters 10 --repeats 3 --warmup 2] [--out F.json]
"""
from mmsaol.apis.benchmark import main

if __name__ == '__main__':
    main()
