# resnet50_saol_imagenet.py with the cheap label-map self-supervision
# (mode 'label'): per-location targets are the cut-and-pasted one-hot labels,
# no extra forward pass, no attention term.
_base_ = ['./resnet50_saol_imagenet.py']
model = dict(head=dict(self_supervision=dict(_delete_=True, target='label')))
