#!/usr/bin/python3
"""A read-only FUSE view of a directory whose reads of one file fail with EIO over a
byte range: a scratched disc, for airlift's tests.

usage: eio_fs.py SOURCE MOUNTPOINT FILE START END
Reads of FILE (a name in SOURCE) that touch bytes [START, END) fail with EIO; every
other read is passed through. Runs in the foreground until unmounted.
"""
import errno
import os
import sys

import fusepy


class ScratchedDisc(fusepy.Operations):
    def __init__(self, source, bad_file, start, end):
        self.source = source
        self.bad_file = "/" + bad_file
        self.start = start
        self.end = end

    def _real(self, path):
        return os.path.join(self.source, path.lstrip("/"))

    def getattr(self, path, fh=None):
        st = os.lstat(self._real(path))
        return {k: getattr(st, k) for k in (
            "st_mode", "st_size", "st_uid", "st_gid", "st_nlink", "st_atime", "st_mtime", "st_ctime")}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._real(path))

    def open(self, path, flags):
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise fusepy.FuseOSError(errno.EROFS)
        return os.open(self._real(path), os.O_RDONLY)

    def read(self, path, size, offset, fh):
        if path == self.bad_file and offset < self.end and offset + size > self.start:
            raise fusepy.FuseOSError(errno.EIO)
        return os.pread(fh, size, offset)

    def release(self, path, fh):
        os.close(fh)
        return 0


def main():
    source, mountpoint, bad_file, start, end = sys.argv[1:6]
    ops = ScratchedDisc(os.path.abspath(source), bad_file, int(start), int(end))
    # direct_io: every read reaches us (no page cache hiding the failure).
    fusepy.FUSE(ops, mountpoint, foreground=True, ro=True, direct_io=True)


if __name__ == "__main__":
    main()
