// fake-gcs-server for Lifeline's gs:// tests: the upstream emulator (github.com/fsouza/fake-gcs-server,
// its fakestorage package, pinned in go.mod) on 127.0.0.1 over plain http, plus the one part of the
// Cloud Storage XML API that upstream does not serve and the Rust object_store client (obstore) uses
// for every write: uploading an object by PUT /BUCKET/OBJECT (with x-goog-if-generation-match), and the
// XML multipart upload (POST ?uploads, PUT ?partNumber&uploadId, POST ?uploadId, DELETE ?uploadId).
// Upstream issue: fsouza/fake-gcs-server#331.
//
// The adapter stores nothing itself: a whole upload is handed to upstream's own JSON-API media upload
// (POST /upload/storage/v1/b/BUCKET/o?uploadType=media&name=OBJECT&ifGenerationMatch=N), so
// preconditions, generations and checksums are upstream's; the answer is turned into the XML API's
// (an empty 200 with ETag and x-goog-generation, or an <Error> document with the XML API's code).
// Multipart parts are held in memory until the upload completes or is aborted. A listing of a bucket
// that does not exist answers 404 NoSuchBucket, as the service does (upstream answers 500).
//
// Upstream checks no credentials. With -service-account-public-key, every request (but the health
// check) must carry what a service account's key file makes object_store send: a self-signed JWT
// (RS256) as its bearer token, signed by that key and not expired; anything else is 401, as the
// service answers a token it cannot verify.
package main

import (
	"bytes"
	"crypto"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

type part struct {
	etag string
	data []byte
}

type upload struct {
	bucket, object string
	parts          map[int]part
}

type adapter struct {
	gcs     *fakestorage.Server
	next    http.Handler
	mu      sync.Mutex
	uploads map[string]*upload
	key     *rsa.PublicKey // nil: no credentials checked (upstream's behaviour)
}

// authenticated says why a request's bearer token is not a valid self-signed JWT of a.key ("" if it is).
func (a *adapter) authenticated(r *http.Request) string {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return "Authentication required."
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "Invalid Credentials"
	}
	var header struct{ Alg string }
	var claims struct {
		Iss string
		Exp int64
	}
	h, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	c, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(h, &header) != nil || json.Unmarshal(c, &claims) != nil {
		return "Invalid Credentials"
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if header.Alg != "RS256" || rsa.VerifyPKCS1v15(a.key, crypto.SHA256, digest[:], sig) != nil {
		return "Invalid Credentials"
	}
	if claims.Iss == "" || claims.Exp < time.Now().Unix() {
		return "Invalid Credentials"
	}
	return ""
}

func loadKey(path string) *rsa.PublicKey {
	data, err := os.ReadFile(path)
	if err != nil {
		log.Fatalf("fake-gcs-server: %v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		log.Fatalf("fake-gcs-server: no PEM block in %s", path)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		log.Fatalf("fake-gcs-server: %s: %v", path, err)
	}
	rsaKey, ok := key.(*rsa.PublicKey)
	if !ok {
		log.Fatalf("fake-gcs-server: %s is not an RSA public key", path)
	}
	return rsaKey
}

func xmlError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(status)
	var text bytes.Buffer
	xml.EscapeText(&text, []byte(message))
	fmt.Fprintf(w, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message></Error>", code, text.String())
}

func noSuchBucket(w http.ResponseWriter) {
	xmlError(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist.")
}

func (a *adapter) bucketExists(name string) bool {
	_, err := a.gcs.Backend().GetBucket(name)
	return err == nil
}

// split "/bucket/obj%2Fect" into its bucket and object names; ok=false for a path without an object.
func split(r *http.Request) (bucket, object string, ok bool) {
	p := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	b, o, found := strings.Cut(p, "/")
	if !found || o == "" || b == "" {
		return "", "", false
	}
	bucket, err1 := url.PathUnescape(b)
	object, err2 := url.PathUnescape(o)
	return bucket, object, err1 == nil && err2 == nil
}

// store hands a whole object to upstream's media upload and writes the XML API's answer.
func (a *adapter) store(w http.ResponseWriter, r *http.Request, bucket, object string, body io.Reader, result func(etag string) []byte) {
	q := url.Values{"uploadType": {"media"}, "name": {object}}
	if g := r.Header.Get("x-goog-if-generation-match"); g != "" {
		q.Set("ifGenerationMatch", g)
	}
	inner := httptest.NewRequest(http.MethodPost, "/upload/storage/v1/b/"+url.PathEscape(bucket)+"/o?"+q.Encode(), body)
	inner.Host = r.Host
	inner.RemoteAddr = r.RemoteAddr
	if ct := r.Header.Get("Content-Type"); ct != "" {
		inner.Header.Set("Content-Type", ct)
	} else {
		inner.Header.Set("Content-Type", "application/octet-stream")
	}
	for k, v := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-goog-meta-") {
			inner.Header[k] = v
		}
	}
	rec := httptest.NewRecorder()
	a.next.ServeHTTP(rec, inner)
	switch {
	case rec.Code == http.StatusNotFound:
		noSuchBucket(w)
		return
	case rec.Code == http.StatusPreconditionFailed:
		xmlError(w, http.StatusPreconditionFailed, "PreconditionFailed",
			"At least one of the pre-conditions you specified did not hold.")
		return
	case rec.Code != http.StatusOK:
		xmlError(w, rec.Code, "InternalError", strings.TrimSpace(rec.Body.String()))
		return
	}
	var obj struct {
		Etag, Md5Hash, Crc32c string
		Generation            json.Number
		Metageneration        json.Number
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &obj); err != nil {
		xmlError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	h := w.Header()
	h.Set("ETag", `"`+obj.Etag+`"`)
	h.Set("x-goog-generation", obj.Generation.String())
	h.Set("x-goog-metageneration", obj.Metageneration.String())
	h.Add("x-goog-hash", "crc32c="+obj.Crc32c)
	h.Add("x-goog-hash", "md5="+obj.Md5Hash)
	if result == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	w.Write(result(`"` + obj.Etag + `"`))
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (a *adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bucket, object, isObject := split(r)
	// The JSON API (/storage/v1, /upload, /download, /batch) and upstream's internals are upstream's.
	jsonAPI := strings.HasPrefix(r.URL.Path, "/storage/") || strings.HasPrefix(r.URL.Path, "/upload/") ||
		strings.HasPrefix(r.URL.Path, "/download/") || strings.HasPrefix(r.URL.Path, "/batch/") ||
		strings.HasPrefix(r.URL.Path, "/_internal/")
	if a.key != nil && r.URL.Path != "/_internal/healthcheck" {
		if why := a.authenticated(r); why != "" {
			if jsonAPI {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprintf(w, `{"error":{"code":401,"message":%q,"errors":[{"domain":"global","reason":"authError","message":%q}]}}`, why, why)
			} else {
				xmlError(w, http.StatusUnauthorized, "AuthenticationRequired", why)
			}
			return
		}
	}
	switch {
	case jsonAPI || q.Has("X-Goog-Algorithm"): // signed URLs: upstream's
	case r.Method == http.MethodGet && !isObject && q.Get("list-type") == "2":
		if name := strings.Trim(r.URL.Path, "/"); !a.bucketExists(name) {
			noSuchBucket(w)
			return
		}
	case isObject && r.Method == http.MethodPost && q.Has("uploads"):
		a.initiate(w, r, bucket, object)
		return
	case isObject && r.Method == http.MethodPut && q.Has("uploadId"):
		a.putPart(w, r, q)
		return
	case isObject && r.Method == http.MethodPost && q.Has("uploadId"):
		a.complete(w, r, bucket, object, q.Get("uploadId"))
		return
	case isObject && r.Method == http.MethodDelete && q.Has("uploadId"):
		a.mu.Lock()
		delete(a.uploads, q.Get("uploadId"))
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	case isObject && r.Method == http.MethodPut:
		defer r.Body.Close()
		a.store(w, r, bucket, object, r.Body, nil)
		return
	}
	a.next.ServeHTTP(w, r)
}

func (a *adapter) initiate(w http.ResponseWriter, r *http.Request, bucket, object string) {
	if !a.bucketExists(bucket) {
		noSuchBucket(w)
		return
	}
	id := newID()
	a.mu.Lock()
	a.uploads[id] = &upload{bucket: bucket, object: object, parts: map[int]part{}}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	type result struct {
		XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
		Bucket   string
		Key      string
		UploadId string
	}
	out, _ := xml.Marshal(result{Bucket: bucket, Key: object, UploadId: id})
	w.Write([]byte(xml.Header))
	w.Write(out)
}

func (a *adapter) putPart(w http.ResponseWriter, r *http.Request, q url.Values) {
	defer r.Body.Close()
	n, err := strconv.Atoi(q.Get("partNumber"))
	if err != nil || n < 1 || n > 10000 {
		xmlError(w, http.StatusBadRequest, "InvalidArgument", "partNumber must be 1-10000")
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		xmlError(w, http.StatusBadRequest, "IncompleteBody", err.Error())
		return
	}
	sum := md5.Sum(data)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	a.mu.Lock()
	up := a.uploads[q.Get("uploadId")]
	if up != nil {
		up.parts[n] = part{etag: etag, data: data}
	}
	a.mu.Unlock()
	if up == nil {
		xmlError(w, http.StatusNotFound, "NoSuchUpload", "The requested upload was not found.")
		return
	}
	w.Header().Set("ETag", etag)
	w.WriteHeader(http.StatusOK)
}

func (a *adapter) complete(w http.ResponseWriter, r *http.Request, bucket, object, id string) {
	defer r.Body.Close()
	var req struct {
		Parts []struct {
			PartNumber int
			ETag       string
		} `xml:"Part"`
	}
	if err := xml.NewDecoder(r.Body).Decode(&req); err != nil {
		xmlError(w, http.StatusBadRequest, "MalformedXML", err.Error())
		return
	}
	a.mu.Lock()
	up := a.uploads[id]
	delete(a.uploads, id)
	a.mu.Unlock()
	if up == nil || up.bucket != bucket || up.object != object {
		xmlError(w, http.StatusNotFound, "NoSuchUpload", "The requested upload was not found.")
		return
	}
	if !sort.SliceIsSorted(req.Parts, func(i, j int) bool { return req.Parts[i].PartNumber < req.Parts[j].PartNumber }) {
		xmlError(w, http.StatusBadRequest, "InvalidPartOrder", "The list of parts was not in ascending order.")
		return
	}
	readers := make([]io.Reader, 0, len(req.Parts))
	for _, p := range req.Parts {
		have, ok := up.parts[p.PartNumber]
		if !ok || strings.Trim(have.etag, `"`) != strings.Trim(p.ETag, `"`) {
			xmlError(w, http.StatusBadRequest, "InvalidPart", fmt.Sprintf("part %d was not uploaded as listed", p.PartNumber))
			return
		}
		readers = append(readers, bytes.NewReader(have.data))
	}
	a.store(w, r, bucket, object, io.MultiReader(readers...), func(etag string) []byte {
		type result struct {
			XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
			Location string
			Bucket   string
			Key      string
			ETag     string
		}
		loc := "http://" + r.Host + "/" + url.PathEscape(bucket) + "/" + url.PathEscape(object)
		out, _ := xml.Marshal(result{Location: loc, Bucket: bucket, Key: object, ETag: etag})
		return append([]byte(xml.Header), out...)
	})
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Uint("port", 4443, "port to listen on")
	root := flag.String("filesystem-root", "", "keep objects under this directory (default: in memory)")
	quiet := flag.Bool("quiet", false, "do not log every request")
	keyFile := flag.String("service-account-public-key", "", "accept only bearer JWTs signed by this RSA key (PEM)")
	flag.Parse()

	var logs io.Writer = os.Stderr
	if *quiet {
		logs = nil
	}
	gcs, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: *host, Port: uint16(*port), PublicHost: *host, StorageRoot: *root,
		NoListener: true, Writer: logs,
	})
	if err != nil {
		log.Fatalf("fake-gcs-server: %v", err)
	}
	listener, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(int(*port))))
	if err != nil {
		log.Fatalf("fake-gcs-server: %v", err)
	}
	a := &adapter{gcs: gcs, next: gcs.HTTPHandler(), uploads: map[string]*upload{}}
	if *keyFile != "" {
		a.key = loadKey(*keyFile)
	}
	go func() { log.Fatal(http.Serve(listener, a)) }()
	log.Printf("fake-gcs-server: serving http://%s (JSON API and XML API uploads)", listener.Addr())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
}
