"""Readers of raw dataset layouts: each finds the cases of one layout and returns a `RawDataset`.

- `nnunet`: an nnU-Net v2 raw folder (`dataset.json`, `imagesTr/<case>_XXXX`, `labelsTr/`);
- `msd`: a Medical Segmentation Decathlon task (`dataset.json` with a `training` list);
- `folder`: a user's own scans and label maps, paired by case id.
"""
