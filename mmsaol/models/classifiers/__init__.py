from .saol_classifier import SAOLClassifier, frozen_norm_statistics

__all__ = ['SAOLClassifier', 'frozen_norm_statistics']
