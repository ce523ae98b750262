#!/usr/bin/env python
"""Fit on training vs test images and each loss's gradient into the last
backbone stage (:mod:`mmsaol.apis.fit_probe`)."""
from mmsaol.apis.fit_probe import main

if __name__ == '__main__':
    main()
