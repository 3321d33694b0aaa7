"""Project templates for `kit new` (shipped in the wheel as the package kit.templates)."""
