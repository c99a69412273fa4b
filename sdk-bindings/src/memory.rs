//! The process's resident memory: glibc's allocator settings (`mallopt(3)`, `malloc_trim(3)`)
//! and paging out data that is no longer needed (`madvise(2)`, `MADV_PAGEOUT`): the C library
//! calls outside the ACAP SDK that Earshot makes, for `earshot run`'s RSS (README, "Where the
//! memory goes").
//!
//! Why the mmap threshold: glibc serves allocations at or above its *mmap threshold* with their own `mmap` and
//! returns them to the kernel on `free`; smaller ones come from the heap, whose freed holes stay
//! resident. The threshold starts at 128 KiB and is *dynamic*: each free of an mmapped block
//! raises it to that block's size (up to 32 MiB on 64-bit targets). Loading the classifier frees
//! multi-megabyte weight copies, so every later weight tensor lands in the heap and the load's
//! holes stay in the process's RSS (README, "Where the memory goes": 31.7 MB anonymous memory
//! against 22.0 MB with a fixed 1 MiB threshold over the background hour). Setting the threshold
//! explicitly turns the dynamic adjustment off (glibc `malloc.c`, `do_set_mmap_threshold`).

/// The ceiling of glibc's *dynamic* mmap threshold on this target, in bytes
/// (`DEFAULT_MMAP_THRESHOLD_MAX` in glibc's `malloc.c`: 512 KiB on 32-bit targets,
/// `4 MiB × sizeof(long)` = 32 MiB on 64-bit). Blocks at least this large are always mmapped
/// while the threshold is dynamic; a fixed threshold above it keeps more in the heap than glibc
/// itself would.
pub const DYNAMIC_MMAP_THRESHOLD_MAX: usize = if cfg!(target_pointer_width = "32") {
    512 * 1024
} else {
    4 * 1024 * 1024 * std::mem::size_of::<std::ffi::c_long>()
};

/// Fixes glibc's mmap threshold at `bytes` (`mallopt(M_MMAP_THRESHOLD, bytes)`): allocations of
/// at least `bytes` get their own mapping, returned to the kernel when freed, and the threshold
/// no longer rises by itself. Call it once, early, before large allocations; it applies to the
/// whole process (every thread's arena).
///
/// Returns `Ok(true)` when set, `Ok(false)` on targets whose C library is not glibc (nothing is
/// changed there).
///
/// # Errors
/// [`crate::Error::MmapThreshold`] when `bytes` does not fit `mallopt`'s C `int` (above
/// 2 147 483 647) or glibc refuses it (glibc 2.36 takes any `int`); nothing is changed then.
pub fn set_mmap_threshold(bytes: usize) -> crate::Result<bool> {
    imp::set_mmap_threshold(bytes)
}

/// Returns the free memory of glibc's heaps to the kernel (`malloc_trim(0)`: the free pages
/// anywhere in each arena, not only at the top), e.g. after a large load has freed its
/// temporaries. Returns whether any memory was released; `false` on targets whose C library is
/// not glibc.
pub fn trim_heap() -> bool {
    imp::trim_heap()
}

/// Asks the kernel to page out the whole pages inside `data` (`madvise(MADV_PAGEOUT)`, Linux
/// 5.4 and later): they leave the process's resident set, and their contents stay as they are
/// (a file-backed page is read again from its file, an anonymous one from swap, if ever touched
/// again; without swap the kernel keeps anonymous pages). For data read once and never again,
/// such as the classifier's ONNX bytes embedded in the binary once the model is loaded.
///
/// Returns how many bytes were advised (`data` shrunk inwards to whole pages; 0 if it spans no
/// whole page, or off Linux).
///
/// # Errors
/// [`crate::Error::Madvise`] with the kernel's errno, e.g. `EINVAL` (22) on kernels before 5.4.
pub fn page_out(data: &[u8]) -> crate::Result<usize> {
    imp::page_out(data)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::ffi::{c_int, c_long, c_void};

    /// `M_MMAP_THRESHOLD` of glibc's `<malloc.h>`.
    const M_MMAP_THRESHOLD: c_int = -3;
    /// `MADV_PAGEOUT` of Linux's `<asm-generic/mman-common.h>` (the same on every architecture).
    const MADV_PAGEOUT: c_int = 21;
    /// `_SC_PAGESIZE` of glibc's `<bits/confname.h>` (the same on every Linux architecture).
    const SC_PAGESIZE: c_int = 30;

    extern "C" {
        /// glibc: `int mallopt(int param, int value)`; 1 on success, 0 on error.
        fn mallopt(param: c_int, value: c_int) -> c_int;
        /// glibc: `int malloc_trim(size_t pad)`; 1 if memory was released.
        fn malloc_trim(pad: usize) -> c_int;
        /// `int madvise(void *addr, size_t length, int advice)`; 0, or −1 and errno.
        fn madvise(addr: *mut c_void, length: usize, advice: c_int) -> c_int;
        /// `long sysconf(int name)`.
        fn sysconf(name: c_int) -> c_long;
    }

    pub(super) fn trim_heap() -> bool {
        // SAFETY: malloc_trim takes a size and works under the allocator's own locks; it only
        // releases pages of free chunks.
        unsafe { malloc_trim(0) == 1 }
    }

    pub(super) fn page_out(data: &[u8]) -> crate::Result<usize> {
        // SAFETY: sysconf reads a constant of the system.
        let page = unsafe { sysconf(SC_PAGESIZE) };
        let page = usize::try_from(page)
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096);
        let start = (data.as_ptr() as usize).next_multiple_of(page);
        let end = (data.as_ptr() as usize + data.len()) & !(page - 1);
        if end <= start {
            return Ok(0);
        }
        let len = end - start;
        // SAFETY: [start, end) lies inside `data`, memory this process may read. MADV_PAGEOUT
        // never changes contents (it only reclaims pages, reloading them on the next access),
        // so the borrow's contents stay valid for every reader.
        if unsafe { madvise(start as *mut c_void, len, MADV_PAGEOUT) } == 0 {
            Ok(len)
        } else {
            let e = std::io::Error::last_os_error();
            Err(crate::Error::Madvise {
                errno: e.raw_os_error().unwrap_or(0),
                message: e.to_string(),
            })
        }
    }

    pub(super) fn set_mmap_threshold(bytes: usize) -> crate::Result<bool> {
        let refused = crate::Error::MmapThreshold { bytes };
        let Ok(value) = c_int::try_from(bytes) else {
            return Err(refused);
        };
        // SAFETY: mallopt takes two ints and touches only the allocator's own parameters (under
        // its lock); any value is allowed (glibc validates it and returns 0 when it refuses).
        if unsafe { mallopt(M_MMAP_THRESHOLD, value) } == 1 {
            Ok(true)
        } else {
            Err(refused)
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn set_mmap_threshold(_bytes: usize) -> crate::Result<bool> {
        Ok(false)
    }

    pub(super) fn trim_heap() -> bool {
        false
    }

    pub(super) fn page_out(_data: &[u8]) -> crate::Result<usize> {
        Ok(0)
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_threshold_earshot_run_sets() {
        assert_eq!(set_mmap_threshold(DYNAMIC_MMAP_THRESHOLD_MAX), Ok(true));
        assert_eq!(set_mmap_threshold(1 << 20), Ok(true));
    }

    /// 256 KiB of read-only data in the binary, like the embedded model.
    static RODATA: [u8; 1 << 18] = {
        let mut a = [0u8; 1 << 18];
        let mut i = 0;
        while i < a.len() {
            a[i] = (i % 251) as u8;
            i += 1;
        }
        a
    };

    #[test]
    fn paged_out_data_keeps_its_contents() {
        let sum = |d: &[u8]| d.iter().map(|&b| u64::from(b)).sum::<u64>();
        let before = sum(&RODATA);
        let advised = page_out(&RODATA).unwrap();
        // Whole pages inside: at most two partial pages (of up to 64 KiB) are left out.
        assert!(advised > 0 && advised <= RODATA.len(), "{advised}");
        assert!(advised % 4096 == 0, "{advised}");
        assert_eq!(sum(&RODATA), before);
        assert!(RODATA
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8));
        // Heap data too (anonymous pages: kept without swap, swapped out with it).
        let heap: Vec<u8> = RODATA.to_vec();
        page_out(&heap).unwrap();
        assert_eq!(heap.as_slice(), &RODATA[..]);
    }

    #[test]
    fn less_than_a_page_is_not_advised() {
        assert_eq!(page_out(&RODATA[1..100]), Ok(0));
        assert_eq!(page_out(&[]), Ok(0));
    }

    #[test]
    fn trimming_the_heap_keeps_live_data() {
        let keep: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 10_000]).collect();
        drop((0..64).map(|_| vec![1u8; 50_000]).collect::<Vec<_>>());
        trim_heap();
        assert!(keep
            .iter()
            .enumerate()
            .all(|(i, v)| v.iter().all(|&b| b == i as u8)));
    }

    #[test]
    fn a_threshold_beyond_a_c_int_is_refused_by_name() {
        let bytes = i32::MAX as usize + 1;
        let err = set_mmap_threshold(bytes).unwrap_err();
        assert_eq!(err, crate::Error::MmapThreshold { bytes });
        assert!(err.to_string().contains("2147483648"), "{err}");
    }
}
