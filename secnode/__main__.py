from secnode.cli import main

# Guarded: `serve --workers` starts workers with multiprocessing's "spawn", which
# imports the parent's main module (this one, under `python -m secnode`) in each worker.
if __name__ == "__main__":
    main()
