"""Batches drawn from a progress-wrapped iterable."""

from pipeline.progress import chunked


def test_chunks_are_pulled_lazily_so_progress_advances_per_item() -> None:
    pulled: list[int] = []

    def numbers():
        for n in range(5):
            pulled.append(n)
            yield n

    chunks = chunked(numbers(), 2)
    assert next(chunks) == [0, 1] and pulled == [0, 1]
    assert list(chunks) == [[2, 3], [4]]
