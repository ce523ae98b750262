"""``python -m mmsaol <tool> [flags]``: the ``mmsaol`` command."""
import sys

from mmsaol.apis.entry import main

if __name__ == '__main__':
    sys.exit(main())
