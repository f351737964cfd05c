"""Subspace analysis: how many dimensions of each teacher layer a subtask needs (rank-k
reconstructions, :mod:`.rank`), and which stages to pair (:mod:`subdistill.models.stages`); ``subdistill
analyze`` (:mod:`.run`)."""
