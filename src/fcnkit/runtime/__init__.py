"""What training and inference share: the device, numeric precision, processes
(torchrun/DDP) and checkpoint files."""
