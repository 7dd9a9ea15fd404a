"""A reader for the `.ts` format of the UEA/UCR time-series archive (no extra dependency).

Header lines start with `#` (comments) or `@` (metadata); after `@data` each line
holds one series: its channels separated by `:`, each channel's values separated
by `,`, and the class label last.
"""

import numpy as np


def parse_ts(text: str) -> tuple[list[np.ndarray], list[str]]:
    """Parses `.ts` text into series and labels.

    Returns:
      `(series, labels)`: N float32 arrays of shape `(T_i, D)` (time-major, one
      column per channel) and the N class labels as strings.

    Examples:
      >>> series, labels = parse_ts("@data\\n1,2,3:4,5,6:a\\n7:8:b\\n")
      >>> [s.shape for s in series], labels
      ([(3, 2), (1, 2)], ['a', 'b'])
    """
    lines = iter(text.splitlines())
    for line in lines:
        if line.strip().lower() == "@data":
            break
    else:
        raise ValueError("`text` is not in the .ts format: it has no `@data` line.")
    series, labels = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        *channels, label = line.strip().split(":")
        columns = [np.array(channel.split(","), dtype=np.float32) for channel in channels]
        if len({len(c) for c in columns}) != 1:
            raise ValueError(
                f"series {number} has channels of different lengths "
                f"{[len(c) for c in columns]}; every channel of a series must have one length."
            )
        series.append(np.stack(columns, axis=1))
        labels.append(label.strip())
    return series, labels
