#!/usr/bin/env python
"""WSOL accuracy of a checkpoint; see ``mmsaol.apis.eval_wsol``."""
from mmsaol.apis.eval_wsol import main

if __name__ == '__main__':
    main()
