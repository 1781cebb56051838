"""Training (``handvox train``). Its modules, each importing only ones listed before it:
:mod:`~handvox.train.augment` (the random draw of augmentation), :mod:`~handvox.train.config`
(what defines a run), :mod:`~handvox.train.distributed` (its processes),
:mod:`~handvox.train.logs` (what it reports), :mod:`~handvox.train.state` (where it stands,
resumption), :mod:`~handvox.train.data` (what it reads) and :mod:`~handvox.train.trainer` (the
loop). The package itself imports none of them."""
