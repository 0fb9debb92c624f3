"""Images: references, the content store, registries, archives, base images.

The pieces other layers use (imports stay lazy: nothing is imported here)::

    from berth.image.store import ImageStore, Image, ImageNotFound
    store = ImageStore(engine_root)              # <root>/images/
    img = store.get("busybox")                   # tag, repo@digest, or (short) ID
    store.layer_dirs(img)                        # unpacked layers, lowest first
    store.put_blob(src, media_type, expected_digest=None) -> descriptor
    store.write_image(config, layers, tags)      # layers: descriptors + "diff_id"
    store.tag(src, new); store.remove(ref, force=False); store.prune(all_images)
    store.set_in_use_hook(fn)                    # fn() -> image IDs used by containers
    store.fsck(repair=False); store.disk_usage()

    from berth.image.registry import pull, push  # pull(store, ref, platform=, insecure=)
    from berth.image.archive import save, load, import_rootfs, export_image
    from berth.image.bootstrap import bootstrap  # "busybox" or "debian:bookworm"
    from berth.image.reference import parse, normalize, familiar
"""
