"""End-to-end training on images: trainable backbones, the image scoring model, the device, and
supervised training through a DataLoader. The feature-based path stays the default; these are used
when a method's config names a `backbone`."""
