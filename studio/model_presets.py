"""Short descriptions of engine.models.PRESETS for pickers (kept torch-free)."""

PRESET_NOTES = {
    "tiny": "1 x 32, for trying things (seconds)",
    "small": "2 x 128, minutes on a CPU",
    "medium": "3 x 256",
    "large": "3 x 320",
    "paper": "3 x 400, the paper's network (a GPU helps)",
}
