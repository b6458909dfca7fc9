/* SPDX-License-Identifier: Apache-2.0 */
/* Error code descriptions. */
#include <faultline/common.h>

const char *fl_strerror(int err)
{
    switch (err) {
    case FL_OK:
        return "success";
    case FL_ERR_NOMEM:
        return "out of memory";
    case FL_ERR_INVALID:
        return "invalid argument";
    case FL_ERR_LIMIT:
        return "limit reached";
    case FL_ERR_IO:
        return "I/O error";
    case FL_ERR_NOT_FOUND:
        return "not found";
    case FL_ERR_BUSY:
        return "busy, retry later";
    case FL_ERR_CLOSED:
        return "closed";
    case FL_ERR_UNSUPPORTED:
        return "not supported";
    case FL_ERR_TIMEOUT:
        return "timed out";
    case FL_ERR_CONFLICT:
        return "conflicting state";
    case FL_ERR_DECODE:
        return "malformed message";
    case FL_ERR_ENCODING:
        return "unsupported or corrupt content encoding";
    case FL_ERR_TOO_DEEP:
        return "nesting too deep";
    case FL_ERR_TOO_LARGE:
        return "message too large";
    case FL_ERR_MEDIA_TYPE:
        return "unsupported media type";
    case FL_ERR_STORE:
        return "store error";
    case FL_ERR_STORE_FULL:
        return "store full or read-only";
    case FL_ERR_STORE_CORRUPT:
        return "store corrupt";
    case FL_ERR_NET:
        return "network error";
    case FL_ERR_PROTOCOL:
        return "protocol error";
    default:
        return "unknown error";
    }
}

int fl_err_is_fatal(int err)
{
    return err == FL_ERR_NOMEM || err == FL_ERR_STORE_CORRUPT;
}
