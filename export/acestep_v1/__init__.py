"""ACE-Step v1 (3.5B, the DCAE family): the DiT with its lyric encoder, the lyric tokenizer, the music DCAE and
vocoder, checkpoint loading and the ``tiny`` preset. UMT5 and ``AutoencoderDC`` are the stock library classes."""
