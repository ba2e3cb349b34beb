"""Input listing, reading and decoding (images, PDFs)."""
