#!/usr/bin/env python
"""Draw SAOL's maps (or CAMs); see ``mmsaol.apis.visualize_maps``."""
from mmsaol.apis.visualize_maps import main

if __name__ == '__main__':
    main()
