/*
 * The safetensors reader on arbitrary bytes: parse, then check what it promises
 * of every tensor (its bytes are inside the buffer, nbytes = shape x dtype size)
 * and look each one up by name.
 */
#include "fuzz_common.h"

#include "format/safetensors.h"
#include "pocketlm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct safetensors_file *file;
    if (safetensors_parse(data, size, &file) != PLM_OK)
        return 0;
    for (size_t i = 0; i < file->n_tensors; i++) {
        const struct safetensors_tensor *t = &file->tensors[i];
        if (safetensors_find(file, t->name) == NULL)
            fuzz_fail("safetensors_find misses a tensor the parse returned");
        uint64_t elements = 1;
        for (int d = 0; d < t->n_dims; d++)
            elements *= (uint64_t)t->shape[d];
        if (elements * safetensors_dtype_size(t->dtype) != t->nbytes)
            fuzz_fail("tensor size does not match its shape");
        if (t->nbytes > 0 && (t->data < data || t->data + t->nbytes > data + size))
            fuzz_fail("tensor data outside the buffer");
        fuzz_touch(t->data, t->nbytes);
        safetensors_dtype_name(t->dtype);
    }
    safetensors_free(file);
    return 0;
}
